"""Money and what it buys: the bank (the one door to every ledger row), the
ledger's rows, the policies and limits in force, their scopes and periods, and the
models with their costs and profiles. ``scopes``, ``periods`` and ``limits`` are pure:
the config imports them."""

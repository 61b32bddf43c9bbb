"""What a message means and what the answer says: the conversation layer the
adapters call (``conversation``, ``admin``), the ``/kontext`` grammar (``commands``), every
user-facing text (``texts``) and the platforms' registry (``platforms``)."""

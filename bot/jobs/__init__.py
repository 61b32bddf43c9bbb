"""A job from acceptance to its end: the service that accepts an edit
(``service``), the store that creates it with its credits reserved (``queue``,
``reservations``), and the runner (``worker``, ``pipeline``, ``failover``, ``polling``,
``progress``, ``cancellation``)."""

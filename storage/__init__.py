"""Built-in storage plugins (SQLite, Postgres), each registered through the ``legato``
entry-point group like any third-party backend."""

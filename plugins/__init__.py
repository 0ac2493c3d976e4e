"""Built-in stage plugins, each registered through the ``legato`` entry-point group."""

"""The built-in commands of ``minidl-run``: each module is a plugin that adds its command
through the ``register_commands(cli)`` hook, as a third party's plugin does."""

"""The ``servicelink`` subcommands for people, beside ``run``: render, graph, import (each module does its own I/O)."""

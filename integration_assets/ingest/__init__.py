"""The file flow, plain Python: scan the inbox and decide what is already loaded (``inbox``), load a file
(``load``), replay its dead letters (``replay``). The Dagster layer and the CLI call it; it imports no
Dagster."""

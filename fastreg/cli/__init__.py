"""The `fastreg` command line: `main` (argparse: serve, token-server, version), the maintenance
subcommands (`commands`: garbage-collect, migrate), their progress bar, and the process limits
raised at start. The top of the import graph: nothing else in fastreg imports this package.
"""

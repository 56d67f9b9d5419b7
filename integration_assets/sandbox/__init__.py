"""The sandbox: seeded demo data, the `demo` command and fakes of the external APIs.

Runtime code never imports this package (an import-linter contract in pyproject.toml); tests, benchmarks and
`make demo` do. The CLI finds the `demo` command by module name.
"""

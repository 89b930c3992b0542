"""Test support shared by every service: real servers on free ports, tokens, databases.

Loaded as a pytest plugin (`-p fm_common.testing.plugin`, set in every pyproject), so
its fixtures are available in every test without imports.
"""

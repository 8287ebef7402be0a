"""Tests of mmsag_ros.export (a package, so its conftest does not shadow test/conftest.py)."""

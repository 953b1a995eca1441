"""{{ cookiecutter.description }}"""

from {{ cookiecutter.package }}.version import read_version

__all__ = ["read_version"]

"""Packaging hook: a built wheel carries the pages' compiled message catalogues.

Only the ``.po`` sources are in git; ``build_py`` compiles each to ``.mo`` next to it in the
build, so ``pip install`` from a wheel or an sdist has every language. (A development checkout
gets them from ``scripts/bootstrap.sh``.) Everything else is in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithCatalogues(build_py):
    def run(self) -> None:
        super().run()
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        for po in sorted(Path("bridge/translations").glob("*/LC_MESSAGES/messages.po")):
            target = Path(self.build_lib) / po.with_suffix(".mo")
            target.parent.mkdir(parents=True, exist_ok=True)
            with po.open("rb") as source:
                catalog = read_po(source)
            with target.open("wb") as out:
                write_mo(out, catalog)


setup(cmdclass={"build_py": BuildWithCatalogues})

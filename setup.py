"""Everything is in pyproject.toml except the package list, which pyproject.toml cannot compute: the packages
under src/, plus configs/ shipped inside the package as robodream/configs (YAML package data, mapped with
package_dir, no copy), so that `policy=diffusion` resolves in an installed robodream too (config.configs_dir)."""

from setuptools import find_namespace_packages, setup

CONFIGS = ["robodream.configs", *(f"robodream.configs.{name}" for name in find_namespace_packages("configs"))]

setup(
    packages=[*find_namespace_packages("src"), *CONFIGS],
    package_dir={"": "src", "robodream.configs": "configs"},
    package_data={name: ["*.yaml"] for name in CONFIGS},
)

"""Services raise the project's own exceptions and know nothing of HTTP (issue 14, STYLE rule 8):
only the interface layer and config's error handler speak DRF's exceptions and status codes.

Read from the source (every import, at any depth), so an import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

from accounts.exceptions import AccountsError
from config.api.errors import SERVICE_ERROR_STATUS, service_error_status

PROJECT_ROOT = Path(__file__).resolve().parents[2]
APPS = ("accounts", "oauth_provider", "files", "audit", "featureflags")
# Where HTTP is the subject: DRF's views, serializers, authentication and permission classes, the
# admin, browser views, middleware, allauth's headless views and the URL confs. (`config` is all
# wiring and is not read.)
INTERFACE_PARTS = frozenset(
    {"api", "admin", "views", "middleware", "headless", "authentication", "permissions", "urls"}
)
DRF_HTTP_MODULES = frozenset({"rest_framework.exceptions", "rest_framework.status"})


def domain_modules() -> dict[str, Path]:
    """The apps' modules outside the interface layer, migrations and tests, by dotted name."""
    modules = {}
    for app in APPS:
        for path in sorted((PROJECT_ROOT / app).rglob("*.py")):
            parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
            if {"migrations", "tests"} & set(parts) or INTERFACE_PARTS & set(parts[1:]):
                continue
            modules[".".join(parts).removesuffix(".__init__")] = path
    return modules


def drf_http_imports(path: Path) -> list[str]:
    """The DRF exception and status modules `path` imports, anywhere in its body."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name in DRF_HTTP_MODULES]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            found += [name for name in names if name in DRF_HTTP_MODULES]
    return found


def test_domain_modules_are_found() -> None:
    modules = domain_modules()

    assert {"accounts.services.exports", "accounts.exceptions", "accounts.lockout"} <= set(modules)
    assert not {"accounts.headless", "accounts.authentication", "accounts.api.permissions"} & set(modules)


def test_services_raise_no_drf_exceptions() -> None:
    offenders = sorted(
        f"{module} imports {imported}"
        for module, path in domain_modules().items()
        for imported in drf_http_imports(path)
    )

    assert offenders == []


def subclasses(base: type[AccountsError]) -> set[type[AccountsError]]:
    found = set(base.__subclasses__())
    for subclass in list(found):
        found |= subclasses(subclass)
    return found


def test_every_refusal_of_the_services_has_a_status() -> None:
    """A refusal without one would be answered 500, as a bug."""
    leaves = {cls for cls in subclasses(AccountsError) if not cls.__subclasses__()}
    without_status = sorted(cls.__name__ for cls in leaves if service_error_status(cls) is None)

    assert without_status == []
    assert all(400 <= status < 500 for status in SERVICE_ERROR_STATUS.values())

"""Where the project's data lives. The harness runs from a checkout (`pip install -e .`), so the
vendored profiles, fixtures and the reference server sit next to the package."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROFILES_DIR = PROJECT_ROOT / "profiles"
DEFAULT_PROFILE_DIR = PROFILES_DIR / "koppeltaalv2.00-0.16.2"
R4_TYPES = PROFILES_DIR / "r4" / "profiles-types.json"
R4_CORE_RESOURCES = PROFILES_DIR / "r4" / "core-resources.json.gz"
R4_CORE_EXTENSIONS = PROFILES_DIR / "r4" / "core-extensions.json.gz"
R4_CORE_TERMINOLOGY = PROFILES_DIR / "r4" / "core-terminology.json.gz"
FIXTURES_DIR = PROJECT_ROOT / "fixtures"
REFERENCE_SERVER_DIR = PROJECT_ROOT / "reference_server"
SUITES_DIR = PROJECT_ROOT / "suites"

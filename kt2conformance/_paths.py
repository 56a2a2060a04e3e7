"""Where the project's data lives. From a checkout (`pip install -e .`) the vendored profiles,
the fixtures, the suites and the reference server sit next to the package; an installed wheel
carries the first three inside the package, as `_data/` (setup.py copies them there). Profiles
fetched by the user go under `profiles/` of the checkout, or of the working directory for an
installed harness."""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent
_DATA = PACKAGE_DIR / "_data"
INSTALLED = _DATA.is_dir()
DATA_ROOT = _DATA if INSTALLED else PROJECT_ROOT
PROFILES_DIR = DATA_ROOT / "profiles"
# where `profiles fetch` stores packages and `--profile NAME` also looks
USER_PROFILES_DIR = Path("profiles").resolve() if INSTALLED else PROFILES_DIR
DEFAULT_PROFILE_DIR = PROFILES_DIR / "koppeltaalv2.00-0.16.2"
R4_TYPES = PROFILES_DIR / "r4" / "profiles-types.json"
R4_CORE_RESOURCES = PROFILES_DIR / "r4" / "core-resources.json.gz"
R4_CORE_EXTENSIONS = PROFILES_DIR / "r4" / "core-extensions.json.gz"
R4_CORE_TERMINOLOGY = PROFILES_DIR / "r4" / "core-terminology.json.gz"
# what HAPI's validator knows with no terminology server: ISO 3166, ISO 4217, USPS
COMMON_CODE_SYSTEMS = PROFILES_DIR / "r4" / "common-code-systems.json"
# UCUM's prefixes and units, as the UCUM library HAPI's validator uses has them
UCUM_ESSENCE = PROFILES_DIR / "r4" / "ucum-essence.json"
# BCP 47 language and region subtags, as HAPI's validator looks languages up in them
BCP47_SUBTAGS = PROFILES_DIR / "r4" / "bcp47-subtags.json"
FIXTURES_DIR = DATA_ROOT / "fixtures"
REFERENCE_SERVER_DIR = PROJECT_ROOT / "reference_server"
SUITES_DIR = DATA_ROOT / "suites"

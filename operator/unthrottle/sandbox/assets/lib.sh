# Shared setup for scripts/: Debian packages and the project venv, installed when missing.
# Sourced, not run.

step() { printf '\n==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root (or sudo) to run: $*" >&2; return 1; fi
}

# ensure_debian_packages PKG...: install the packages whose main command is missing.
ensure_debian_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  step "apt-get install ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_venv: .venv with the package (editable) and its test tools, refreshed when
# pyproject.toml changes.
ensure_venv() {
  local stamp=.venv/.installed-pyproject
  if [ ! -x .venv/bin/python ]; then
    step "python3 -m venv .venv"
    python3 -m venv .venv
  fi
  if ! cmp -s pyproject.toml "$stamp" 2>/dev/null; then
    step "pip install -e .[test]"
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
    cp pyproject.toml "$stamp"
  fi
}

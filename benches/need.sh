# Sourced by the bench scripts: `need COMMAND PACKAGE` installs the Debian
# package PACKAGE when COMMAND is missing.
need() {
  command -v "$1" >/dev/null 2>&1 && return
  echo "installing $2" >&2
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

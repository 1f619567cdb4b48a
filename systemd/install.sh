#!/usr/bin/env bash
# Install edgeagent on a field box as a hardened systemd service.
#
#   sudo ./install.sh [BUNDLE]                from an offline bundle (a directory or the .tar.gz made by
#                                             tools/make-bundle; default: the bundle this script is in).
#                                             No network needed.
#   sudo ./install.sh --from-repo DIR         from a source checkout (pip fetches dependencies: network)
#   sudo ./install.sh --upgrade [SOURCE]      install a new version next to the running one, switch to it,
#                                             keep the old one as "previous"
#   sudo ./install.sh --rollback              switch back to the previous version
#   sudo ./install.sh --uninstall [--purge]   remove the service and the program; config and state stay
#                                             unless --purge
# Options:
#   --root DIR     install into DIR as if it were / (a throw-away or image root): users are created with
#                  useradd --prefix DIR, and systemctl is not run (the lines say what was skipped)
#   --no-start     enable the service but do not start it (edit the config first)
#   --python PY    the Python 3.11+ used to create the venv (default: python3)
#
# Layout: /opt/edgeagent/VERSION (venv), /opt/edgeagent/current and /previous (symlinks),
# /etc/edgeagent/edgeagent.toml (config, never overwritten), /var/lib/edgeagent (state),
# /etc/systemd/system/edgeagent.service, /usr/local/bin/edgeagent.
# Prints one line per action. Running it again changes nothing and says so.
set -eu

umask 022
PROG="install.sh"
USER_NAME="edgeagent"
DEVICE_GROUPS="i2c dialout"
UNIT_NAME="edgeagent.service"

die() { echo "$PROG: error: $*" >&2; exit 1; }
usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; }

changes=0
did() { echo "$*"; changes=$((changes + 1)); }   # an action that changed something
note() { echo "$*"; }                            # something kept, checked or skipped

# -- arguments ------------------------------------------------------------------------------------
ROOT=""
mode="install"
purge=0
start=1
repo=""
bundle_arg=""
PY="${PYTHON:-python3}"
while [ $# -gt 0 ]; do
  case "$1" in
    --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT="$2"; shift 2 ;;
    --from-repo) [ $# -ge 2 ] || die "--from-repo needs a directory"; repo="$2"; shift 2 ;;
    --upgrade) mode="upgrade"; shift ;;
    --rollback) mode="rollback"; shift ;;
    --uninstall) mode="uninstall"; shift ;;
    --purge) purge=1; shift ;;
    --no-start) start=0; shift ;;
    --python) [ $# -ge 2 ] || die "--python needs an interpreter"; PY="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$bundle_arg" ] || die "more than one bundle given: $bundle_arg and $1"; bundle_arg="$1"; shift ;;
  esac
done
[ "$purge" -eq 0 ] || [ "$mode" = "uninstall" ] || die "--purge only goes with --uninstall"
if [ -n "$repo" ] && [ -n "$bundle_arg" ]; then die "give either a bundle or --from-repo, not both"; fi
if [ -n "$ROOT" ]; then
  [ -d "$ROOT" ] || die "--root $ROOT is not a directory"
  ROOT="$(cd "$ROOT" && pwd)"
  [ "$ROOT" != "/" ] || ROOT=""
fi
[ "$(id -u)" -eq 0 ] || die "must run as root (sudo $0 ...): it creates a system user and writes /opt, /etc and /var/lib"

OPT="$ROOT/opt/edgeagent"
ETC="$ROOT/etc/edgeagent"
CONFIG="$ETC/edgeagent.toml"
STATE="$ROOT/var/lib/edgeagent"
UNIT="$ROOT/etc/systemd/system/$UNIT_NAME"
UDEV_RULE="$ROOT/etc/udev/rules.d/60-edgeagent-i2c.rules"
BIN_LINK="$ROOT/usr/local/bin/edgeagent"

link_target() { if [ -L "$1" ]; then readlink "$1"; fi; }

# Replace symlink $2 by one pointing at $1, atomically (a crash leaves the old or the new link).
switch_link() {
  ln -sfn "$1" "$2.new"
  mv -Tf "$2.new" "$2"
}

# -- systemctl, or what it would have been --------------------------------------------------------
systemctl_do() {  # $1 = what the line says, rest = systemctl arguments
  what="$1"; shift
  if [ -n "$ROOT" ]; then
    note "skipped (--root): systemctl $*"
  else
    systemctl "$@"
    did "$what"
  fi
}

# -- source: bundle or repo -----------------------------------------------------------------------
tmp=""
cleanup() { if [ -n "$tmp" ]; then rm -rf "$tmp"; fi; }
trap cleanup EXIT

src=""       # the bundle directory, or the repo
version=""
unit_src=""
config_src=""
udev_src=""

find_bundle() {
  b="$bundle_arg"
  if [ -z "$b" ]; then
    here="$(cd "$(dirname "$0")" && pwd)"
    [ -d "$here/wheels" ] || die "no bundle given and $here holds no wheels/: pass the bundle (.tar.gz or directory) or --from-repo DIR"
    b="$here"
  fi
  if [ -f "$b" ]; then
    case "$b" in *.tar.gz|*.tgz) ;; *) die "$b is not a bundle (.tar.gz or directory)" ;; esac
    tmp="$(mktemp -d)"
    tar -xzf "$b" -C "$tmp" || die "cannot unpack $b (a damaged copy?)"
    set -- "$tmp"/*/
    if [ $# -ne 1 ] || [ ! -d "$1/wheels" ]; then die "$b does not hold one bundle directory with wheels/"; fi
    b="${1%/}"
  fi
  [ -d "$b/wheels" ] || die "$b is not a bundle: no wheels/ in it"
  src="$(cd "$b" && pwd)"
  if [ -f "$src/MANIFEST.txt" ]; then
    (cd "$src" && sha256sum --check --quiet --strict MANIFEST.txt) >/dev/null 2>&1 \
      || die "$src: files do not match MANIFEST.txt (a damaged or edited bundle): see 'cd $src && sha256sum -c MANIFEST.txt'"
  fi
  set -- "$src"/wheels/edgeagent-*.whl
  [ -f "$1" ] || die "$src/wheels holds no edgeagent wheel"
  [ $# -eq 1 ] || die "$src/wheels holds more than one edgeagent wheel"
  version="$(basename "$1" | cut -d- -f2)"
  unit_src="$src/edgeagent.service"
  config_src="$src/site.toml"
  udev_src="$src/60-edgeagent-i2c.rules"
}

find_repo() {
  [ -f "$repo/pyproject.toml" ] || die "--from-repo $repo: no pyproject.toml there"
  src="$(cd "$repo" && pwd)"
  version="$(sed -n 's/^version = "\([^"]*\)".*/\1/p' "$src/pyproject.toml" | head -n 1)"
  [ -n "$version" ] || die "$src/pyproject.toml has no version"
  unit_src="$src/systemd/edgeagent.service"
  config_src="$src/edgeagent/examples/site.toml"
  udev_src="$src/systemd/60-edgeagent-i2c.rules"
}

# -- checks on this machine -----------------------------------------------------------------------
check_python() {
  command -v "$PY" >/dev/null 2>&1 || die "$PY not found: install Python 3.11 or newer (apt-get install python3)"
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "Python 3.11 or newer is needed, $PY is $("$PY" -V 2>&1)"
  "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 \
    || die "the venv module is missing: apt-get install python3-venv (offline: copy its .deb and dpkg -i it)"
}

# Every wheel of the bundle must fit this machine's CPU, Python and C library.
check_wheels() {
  "$PY" - "$src/wheels" <<'PYEOF' || exit 1
import os, platform, re, sys
from pathlib import Path

major, minor = sys.version_info[:2]
machine = platform.machine()
libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
glibc = tuple(int(x) for x in libc.split()[-1].split(".")[:2]) if libc.startswith("glibc") else (0, 0)
legacy = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def python_ok(pys, abis):
    for t in pys:
        if t in ("py3", f"py{major}", f"py{major}{minor}", f"cp{major}{minor}"):
            return True
        m = re.fullmatch(r"cp(\d)(\d+)", t)
        if m and "abi3" in abis and int(m[1]) == major and int(m[2]) <= minor:
            return True
    return False


def platform_ok(plats):
    for p in plats:
        if p == "any" or p == f"linux_{machine}":
            return True
        m = re.fullmatch(r"manylinux_(\d+)_(\d+)_(.+)", p)
        if m and m[3] == machine and (int(m[1]), int(m[2])) <= glibc:
            return True
        for name, need in legacy.items():
            if p == f"{name}_{machine}" and need <= glibc:
                return True
    return False


bad = []
for whl in sorted(Path(sys.argv[1]).glob("*.whl")):
    parts = whl.name[:-4].split("-")
    pys, abis, plats = (set(x.split(".")) for x in parts[-3:])
    if not (python_ok(pys, abis) and platform_ok(plats)):
        bad.append(whl.name)
if bad:
    print(f"install.sh: error: this bundle is not for this machine ({machine}, Python {major}.{minor}, "
          f"glibc {'.'.join(map(str, glibc))}); these wheels do not fit: {', '.join(bad[:5])}"
          f"{' …' if len(bad) > 5 else ''}. Build one with tools/make-bundle --platform {machine} "
          f"--python {major}.{minor}", file=sys.stderr)
    sys.exit(1)
PYEOF
}

# -- users and groups -----------------------------------------------------------------------------
prefix_args() { if [ -n "$ROOT" ]; then printf '%s\n' "--prefix" "$ROOT"; fi; }

group_exists() {
  if [ -n "$ROOT" ]; then grep -q "^$1:" "$ROOT/etc/group"; else getent group "$1" >/dev/null; fi
}
user_exists() {
  if [ -n "$ROOT" ]; then grep -q "^$1:" "$ROOT/etc/passwd"; else getent passwd "$1" >/dev/null; fi
}
user_in_group() {  # $1 user, $2 group
  if [ -n "$ROOT" ]; then
    grep "^$2:" "$ROOT/etc/group" | cut -d: -f4 | tr ',' '\n' | grep -qx "$1"
  else
    id -nG "$1" | tr ' ' '\n' | grep -qx "$2"
  fi
}
numeric_id() {  # $1 passwd|group, $2 name
  if [ -n "$ROOT" ]; then grep "^$2:" "$ROOT/etc/$1" | cut -d: -f3; else getent "$1" "$2" | cut -d: -f3; fi
}

ensure_accounts() {
  if [ -n "$ROOT" ]; then
    mkdir -p "$ROOT/etc"
    for f in passwd group shadow gshadow; do
      if [ ! -e "$ROOT/etc/$f" ]; then
        : > "$ROOT/etc/$f"
        did "created empty $ROOT/etc/$f (for useradd --prefix)"
      fi
    done
  fi
  for g in $DEVICE_GROUPS; do
    if group_exists "$g"; then
      note "kept existing group $g"
    else
      # shellcheck disable=SC2046
      groupadd --system $(prefix_args) "$g"
      did "created group $g"
    fi
  done
  if user_exists "$USER_NAME"; then
    note "kept existing user $USER_NAME"
  else
    # shellcheck disable=SC2046
    useradd --system --user-group --home-dir /var/lib/edgeagent --no-create-home \
      --shell /usr/sbin/nologin --comment "edgeagent daemon" $(prefix_args) "$USER_NAME"
    did "created user $USER_NAME"
  fi
  for g in $DEVICE_GROUPS; do
    if ! user_in_group "$USER_NAME" "$g"; then
      # shellcheck disable=SC2046
      usermod --append --groups "$g" $(prefix_args) "$USER_NAME"
      did "added user $USER_NAME to group $g"
    fi
  done
  uid="$(numeric_id passwd "$USER_NAME")"
  gid="$(numeric_id group "$USER_NAME")"
}

# -- files ----------------------------------------------------------------------------------------
ensure_dir() {  # path mode owner(uid:gid)
  if [ ! -d "$1" ]; then
    mkdir -p "$1"
    chmod "$2" "$1"
    chown "$3" "$1"
    did "created $1 (mode $2)"
    return
  fi
  if [ "$(stat -c '%a %u:%g' "$1")" != "${2#0} $3" ]; then
    chmod "$2" "$1"
    chown "$3" "$1"
    did "set $1 to mode $2, owner $3"
  else
    note "kept existing $1"
  fi
}

# Install $1 at $2 (mode $3) unless it is already there with the same content.
ensure_file() {
  if [ -f "$2" ] && cmp -s "$1" "$2"; then
    note "kept $2 (unchanged)"
    return 1
  fi
  mkdir -p "$(dirname "$2")"
  verb="installed"; [ ! -e "$2" ] || verb="updated"
  install -m "$3" "$1" "$2" || die "cannot write $2"
  did "$verb $2"
}

ensure_config() {
  if [ -e "$CONFIG" ]; then
    note "kept existing $CONFIG"
    return
  fi
  [ -f "$config_src" ] || die "no example config at $config_src"
  install -m 0640 -o 0 -g "$gid" "$config_src" "$CONFIG"
  did "created $CONFIG from the site template (mode 0640 root:$USER_NAME): edit it for your site"
}

# -- the venv -------------------------------------------------------------------------------------
venv_pip() {  # $1 = venv, rest = pip arguments
  v="$1"; shift
  "$v/bin/python" -m pip --disable-pip-version-check --quiet "$@"
}

ensure_venv() {  # $1 = version
  venv="$OPT/$1"
  if [ -f "$venv/.edgeagent-complete" ]; then
    note "kept existing venv $venv"
    return
  fi
  if [ -e "$venv" ]; then
    rm -rf "$venv"
    did "removed the unfinished venv $venv"
  fi
  "$PY" -m venv "$venv" || die "cannot create a venv at $venv with $PY"
  if [ -n "$repo" ]; then
    venv_pip "$venv" install "${src}[hil]" || die "pip could not install edgeagent from $src (it needs the network for the dependencies)"
  else
    venv_pip "$venv" install --no-index --find-links "$src/wheels" "edgeagent[hil]==$1" \
      || die "pip could not install edgeagent $1 from $src/wheels (a dependency missing from the bundle?)"
  fi
  if [ -d "$src/models" ]; then
    cp -R "$src/models" "$venv/models"
  fi
  [ -x "$venv/bin/edgeagent" ] || die "the venv $venv has no bin/edgeagent after pip install"
  date -u +%Y-%m-%dT%H:%M:%SZ > "$venv/.edgeagent-complete"
  did "created venv $venv with edgeagent $1"
}

# Remove versions that are neither current nor previous: a Pi's SD card is small.
prune_versions() {
  cur="$(link_target "$OPT/current")"
  prev="$(link_target "$OPT/previous")"
  for d in "$OPT"/*/; do
    [ -d "$d" ] || continue
    d="${d%/}"
    [ -L "$d" ] && continue
    name="$(basename "$d")"
    if [ "$name" != "$cur" ] && [ "$name" != "$prev" ]; then
      rm -rf "$d"
      did "removed old version $d"
    fi
  done
}

ensure_system_files() {
  unit_changed=0
  [ -f "$unit_src" ] || die "no unit file at $unit_src"
  if ensure_file "$unit_src" "$UNIT" 0644; then unit_changed=1; fi
  if [ -f "$udev_src" ] && ensure_file "$udev_src" "$UDEV_RULE" 0644 && [ -z "$ROOT" ]; then
    { udevadm control --reload-rules && udevadm trigger --subsystem-match=i2c-dev; } 2>/dev/null || true
  fi
  if [ "$(link_target "$BIN_LINK")" = "/opt/edgeagent/current/bin/edgeagent" ]; then
    note "kept $BIN_LINK"
  else
    mkdir -p "$(dirname "$BIN_LINK")"
    switch_link /opt/edgeagent/current/bin/edgeagent "$BIN_LINK"
    did "linked $BIN_LINK -> /opt/edgeagent/current/bin/edgeagent"
  fi
}

# systemd is running as init (not a chroot, an image build or a container without it)
systemd_running() { [ -d /run/systemd/system ]; }

# $1 = restart (the running program changed) or keep
ensure_service() {
  if [ -n "$ROOT" ]; then
    note "skipped (--root): systemctl daemon-reload; systemctl enable --now $UNIT_NAME (nothing is started in a --root install)"
    return
  fi
  if ! systemd_running; then
    # in a chroot or an image build: enabling works offline, reloading and starting do not
    if systemctl is-enabled --quiet "$UNIT_NAME" 2>/dev/null; then
      note "kept $UNIT_NAME enabled"
    else
      systemctl_do "enabled $UNIT_NAME (starts at boot)" enable --quiet "$UNIT_NAME"
    fi
    note "systemd is not running here: not reloaded or started; it starts at the next boot"
    return
  fi
  if [ "$unit_changed" -eq 1 ]; then
    systemctl daemon-reload
  fi
  if systemctl is-enabled --quiet "$UNIT_NAME" 2>/dev/null; then
    note "kept $UNIT_NAME enabled"
  else
    systemctl_do "enabled $UNIT_NAME (starts at boot)" enable --quiet "$UNIT_NAME"
  fi
  if [ "$start" -eq 0 ]; then
    note "not starting $UNIT_NAME (--no-start): sudo systemctl start $UNIT_NAME when the config is ready"
  elif ! systemctl is-active --quiet "$UNIT_NAME"; then
    systemctl_do "started $UNIT_NAME" start "$UNIT_NAME"
  elif [ "$1" = "restart" ] || [ "$unit_changed" -eq 1 ]; then
    systemctl_do "restarted $UNIT_NAME" restart "$UNIT_NAME"
  else
    note "kept $UNIT_NAME running"
  fi
}

# -- the modes ------------------------------------------------------------------------------------
load_source() {
  if [ -n "$repo" ]; then find_repo; else find_bundle; fi
  check_python
  if [ -z "$repo" ]; then check_wheels; fi
}

do_install() {
  load_source
  cur="$(link_target "$OPT/current")"
  if [ -n "$cur" ] && [ "$cur" != "$version" ]; then
    die "edgeagent $cur is installed; to install $version next to it run: $0 --upgrade ..."
  fi
  ensure_accounts
  ensure_dir "$OPT" 0755 0:0
  ensure_dir "$ETC" 0755 0:0
  ensure_dir "$STATE" 0750 "$uid:$gid"
  ensure_venv "$version"
  if [ "$cur" = "$version" ]; then
    note "kept $OPT/current -> $version"
  else
    switch_link "$version" "$OPT/current"
    did "linked $OPT/current -> $version"
  fi
  ensure_config
  ensure_system_files
  ensure_service keep
}

do_upgrade() {
  load_source
  cur="$(link_target "$OPT/current")"
  [ -n "$cur" ] || die "edgeagent is not installed: run $0 without --upgrade first"
  ensure_accounts
  ensure_venv "$version"
  how="keep"
  if [ "$cur" = "$version" ]; then
    note "edgeagent $version is already the current version: nothing to upgrade"
  else
    switch_link "$cur" "$OPT/previous"
    did "linked $OPT/previous -> $cur (for --rollback)"
    switch_link "$version" "$OPT/current"
    did "linked $OPT/current -> $version (upgraded from $cur)"
    how="restart"
  fi
  prune_versions
  ensure_dir "$STATE" 0750 "$uid:$gid"
  ensure_config
  ensure_system_files
  ensure_service "$how"
}

do_rollback() {
  cur="$(link_target "$OPT/current")"
  prev="$(link_target "$OPT/previous")"
  [ -n "$cur" ] || die "edgeagent is not installed: nothing to roll back"
  [ -n "$prev" ] || die "no previous version to roll back to (only $cur is installed)"
  [ -f "$OPT/$prev/.edgeagent-complete" ] || die "the previous version $OPT/$prev is missing or unfinished"
  switch_link "$prev" "$OPT/current"
  did "linked $OPT/current -> $prev (rolled back from $cur)"
  switch_link "$cur" "$OPT/previous"
  did "linked $OPT/previous -> $cur (--rollback again returns to it)"
  unit_changed=0
  ensure_service restart
}

do_uninstall() {
  if [ -e "$UNIT" ] || [ -L "$OPT/current" ]; then
    if [ -n "$ROOT" ]; then
      note "skipped (--root): systemctl disable --now $UNIT_NAME; systemctl daemon-reload"
    else
      systemctl disable --now --quiet "$UNIT_NAME" 2>/dev/null || true
      did "stopped and disabled $UNIT_NAME"
    fi
  fi
  for f in "$UNIT" "$UDEV_RULE"; do
    if [ -e "$f" ]; then rm -f "$f"; did "removed $f"; fi
  done
  if [ -L "$BIN_LINK" ]; then rm -f "$BIN_LINK"; did "removed $BIN_LINK"; fi
  if [ -z "$ROOT" ] && [ "$changes" -gt 0 ] && systemd_running; then systemctl daemon-reload; fi
  if [ -d "$OPT" ]; then
    rm -rf "$OPT"
    did "removed $OPT (all versions and the current/previous links)"
  fi
  if [ "$purge" -eq 1 ]; then
    for d in "$ETC" "$STATE"; do
      if [ -e "$d" ]; then rm -rf "$d"; did "removed $d (--purge)"; fi
    done
    if [ -n "$ROOT" ] && [ ! -f "$ROOT/etc/passwd" ]; then
      :
    elif user_exists "$USER_NAME"; then
      # shellcheck disable=SC2046
      userdel $(prefix_args) "$USER_NAME"
      did "removed user $USER_NAME (groups $DEVICE_GROUPS kept)"
    fi
  else
    for d in "$ETC" "$STATE"; do
      if [ -e "$d" ]; then note "kept $d (remove it with --uninstall --purge)"; fi
    done
  fi
}

case "$mode" in
  install) do_install ;;
  upgrade) do_upgrade ;;
  rollback) do_rollback ;;
  uninstall) do_uninstall ;;
esac

if [ "$changes" -eq 0 ]; then
  echo "nothing changed: everything was already in place"
else
  echo "done: $changes changes"
fi

# The two commands a new user needs: `make run` and `make test`. Each installs what it needs first.
CARGO ?= cargo

.PHONY: run test deps test-deps lint bench install uninstall deb clean

## Run the app (embedded server, synthetic media where no device exists).
run: deps
	$(CARGO) run --release --bin peercall -- $(ARGS)

## Run every test: formatting, clippy without warnings, unit and end-to-end tests.
test: test-deps lint
	$(CARGO) test --all-targets -- --nocapture

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

deps:
	@scripts/install-deps.sh build

test-deps:
	@scripts/install-deps.sh test

## Print the benchmark figures (see README "Figures").
bench: deps
	$(CARGO) run --release --bin signaling-bench -- --clients 1000
	$(CARGO) run --release --bin call-bench
	$(CARGO) run --release --bin codec-bench
	$(CARGO) run --release --bin aec-bench --features bench-candidates
	@if [ "$$(id -u)" = 0 ] && [ -e /dev/net/tun ]; then $(CARGO) build --release --bins && ./target/release/net-bench; \
	else echo "net-bench skipped: it needs root and /dev/net/tun (network namespaces, TUN devices)"; fi

## Install for this user (PREFIX=/usr/local as root for everyone): both binaries, stripped (the release
## profile keeps debug info for benchmarks; users need none of it), the app-menu entry and the icons, so
## Peercall starts by double-click from the desktop's app menu.
PREFIX ?= $(HOME)/.local
BINDIR ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share
TARGET_DIR = $(shell $(CARGO) metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
ICONS = $(DESTDIR)$(DATADIR)/icons/hicolor

install: deps
	$(CARGO) build --release --bin peercall --bin peercall-server
	install -Dm755 --strip "$(TARGET_DIR)/release/peercall" "$(DESTDIR)$(BINDIR)/peercall"
	install -Dm755 --strip "$(TARGET_DIR)/release/peercall-server" "$(DESTDIR)$(BINDIR)/peercall-server"
	install -d "$(DESTDIR)$(DATADIR)/applications"
	sed 's|^Exec=.*|Exec=$(BINDIR)/peercall|' assets/peercall.desktop > "$(DESTDIR)$(DATADIR)/applications/peercall.desktop"
	install -Dm644 assets/icons/peercall-48.png "$(ICONS)/48x48/apps/peercall.png"
	install -Dm644 assets/icons/peercall-128.png "$(ICONS)/128x128/apps/peercall.png"
	install -Dm644 assets/peercall.png "$(ICONS)/256x256/apps/peercall.png"
	install -Dm644 assets/icons/peercall.svg "$(ICONS)/scalable/apps/peercall.svg"
	@if command -v update-desktop-database >/dev/null; then update-desktop-database "$(DESTDIR)$(DATADIR)/applications"; fi
	@echo "installed: $(BINDIR)/peercall ($$(du -h "$(DESTDIR)$(BINDIR)/peercall" | cut -f1)), $(BINDIR)/peercall-server, with Peercall in the app menu"

uninstall:
	rm -f "$(DESTDIR)$(BINDIR)/peercall" "$(DESTDIR)$(BINDIR)/peercall-server" "$(DESTDIR)$(DATADIR)/applications/peercall.desktop"
	rm -f $(foreach s,48x48 128x128 256x256,"$(ICONS)/$(s)/apps/peercall.png") "$(ICONS)/scalable/apps/peercall.svg"

## The Debian package: target/debian/peercall_<version>-1_<arch>.deb (stripped binaries, menu entry, icons,
## dependencies) and peercall-dbgsym_*.ddeb (the debug info, for crash reports). Install with
## `sudo apt install ./target/debian/peercall_*.deb`.
deb:
	@scripts/install-deps.sh build
	@scripts/install-deps.sh deb
	$(CARGO) deb

clean:
	$(CARGO) clean

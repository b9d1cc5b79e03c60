# The two commands a new user needs: `make run` and `make test`. Each installs what it needs first.
CARGO ?= cargo

.PHONY: run test deps test-deps lint bench install clean

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

## Install for this user (PREFIX=/usr/local as root for everyone): the binary, the app-menu entry and
## the icon, so Peercall starts by double-click from the desktop's app menu.
PREFIX ?= $(HOME)/.local
BINDIR ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share
TARGET_DIR = $(shell $(CARGO) metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')

install: deps
	$(CARGO) build --release --bin peercall
	install -Dm755 "$(TARGET_DIR)/release/peercall" "$(DESTDIR)$(BINDIR)/peercall"
	install -d "$(DESTDIR)$(DATADIR)/applications"
	sed 's|^Exec=.*|Exec=$(BINDIR)/peercall|' assets/peercall.desktop > "$(DESTDIR)$(DATADIR)/applications/peercall.desktop"
	install -Dm644 assets/peercall.png "$(DESTDIR)$(DATADIR)/icons/hicolor/256x256/apps/peercall.png"
	@if command -v update-desktop-database >/dev/null; then update-desktop-database "$(DESTDIR)$(DATADIR)/applications"; fi
	@echo "installed: $(BINDIR)/peercall, with Peercall in the app menu"

clean:
	$(CARGO) clean

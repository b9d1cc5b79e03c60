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

clean:
	$(CARGO) clean

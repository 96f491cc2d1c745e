# ichd: the two commands of the README are `make demo` (main job on the simulated board) and `make test`.
# Both install what they need on a fresh Debian 12 + Swift 6.3 machine (apt packages as root or via sudo).

SWIFT ?= swift
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Native libraries (DICOM, JPEG, GPIO), pkg-config for SwiftPM, python3 + pip + venv for the public test files
# and the ONNX Runtime cross-check (dev and test only: the appliance never runs Python).
APT_PACKAGES := libdcmtk-dev libturbojpeg0-dev libgpiod-dev zlib1g-dev pkg-config python3 python3-pip python3-venv
ICHD := .build/release/ichd
# CPU tuning for the kernels (scripts/arch-flags.sh: haswell on AVX2 x86, cortex-a76 on a Pi 5).
ARCH_FLAGS := $(shell bash scripts/arch-flags.sh)
DEMO := demo-out

VENV := .cache/venv

.PHONY: deps build demo test test-data bench verify verify-float clean

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

build: deps
	$(SWIFT) build -c release $(ARCH_FLAGS)

# The main job as far as it is built: synthetic series dropped into a local folder, ingested and
# preprocessed by the appliance's own code. Scoring, the lamp and the serial alert join in later issues.
demo: build
	@rm -rf $(DEMO) && mkdir -p $(DEMO)/out
	$(ICHD) phantom --out $(DEMO)/drop --series 2 --seed 1 --positive-rate 0.5
	$(ICHD) inspect --brief $(DEMO)/drop/series-*/*.dcm
	$(ICHD) preprocess $(DEMO)/drop/series-001/015.dcm --out $(DEMO)/out/series-001-015.jpg --tensor $(DEMO)/out/series-001-015.f32
	$(ICHD) bench --stage preprocess
	@echo "demo: slices in $(DEMO)/drop, model input preview and tensor in $(DEMO)/out"

test-data:
	bash scripts/fetch-test-data.sh

# Tests build in release with testing enabled (the engines run real networks, far too slow in debug), in their
# own scratch folder so that they and the demo's plain release build do not rebuild each other.
TEST_FLAGS := -c release -Xswiftc -enable-testing --scratch-path .build-test $(ARCH_FLAGS)

# The swift test run comes last so that its summary closes the output.
test: deps test-data $(VENV)/.installed
	bash scripts/check-aarch64.sh
	$(SWIFT) build $(TEST_FLAGS) --build-tests
	$(VENV)/bin/python bench/verify_engines.py --float-only --seeds 1 --ichd .build-test/release/ichd
	$(SWIFT) test $(TEST_FLAGS) --skip-build

$(VENV)/.installed: bench/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r bench/requirements.txt
	touch $@

# The float32 executor against ONNX Runtime on the same weights (both layouts, N = 1, 2, 6, F32/F16/BF16).
verify-float: build $(VENV)/.installed
	$(VENV)/bin/python bench/verify_engines.py --float-only --seeds 1

# Also int8 against float32 after conversion (several minutes; see docs/converting.md for the figures).
verify: build $(VENV)/.installed
	$(VENV)/bin/python bench/verify_engines.py

bench: build
	$(ICHD) bench --stage preprocess

clean:
	rm -rf .build .build-test $(DEMO)

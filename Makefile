# Convenience wrapper around CMake; the quick start in README.md uses only
# `make demo` and `make test`.
BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_TSAN ?= build-tsan
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all build demo test test-fast clean

all: build

build:
	scripts/deps.sh build
	cmake -S . -B $(BUILD) $(CMAKE_ARGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

# Generates a dataset, starts the daemon on its embedded defaults, trains a
# finetune job through the client and shows the result.
demo: build
	scripts/demo.sh $(BUILD)

# The whole suite: ASan+UBSan build (every test), then a TSan build for the
# tests that cross threads.
test:
	scripts/deps.sh test
	scripts/test.sh $(BUILD_ASAN) $(BUILD_TSAN)

# The suite once, on a plain build (quicker while developing).
test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_TSAN)

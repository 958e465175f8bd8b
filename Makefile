# Top-level entry points. CMake does the building; this file names the user-facing steps.
BUILD      ?= build
BUILD_SAN  ?= build-san
BUILD_FUZZ ?= build-fuzz
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all deps build test check format format-check tidy test-san fuzz demo bench clean

all: build

deps:
	@tools/install-deps

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test: build
	tools/run-tests $(BUILD)

format:
	tools/format --fix

format-check:
	tools/format --check

tidy: $(BUILD)/CMakeCache.txt
	tools/tidy $(BUILD)

test-san: deps
	cmake -S . -B $(BUILD_SAN) -DCMAKE_BUILD_TYPE=Debug -DASYNCPROBE_SANITIZE=ON \
	  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ $(CMAKE_ARGS)
	cmake --build $(BUILD_SAN) -j $(JOBS)
	# ASan zeroes its own RLIMIT_CORE, which `asyncprobe run` would hand down to the programs it
	# starts: the preload tests check that a crashing target still dumps core.
	ASAN_OPTIONS=disable_coredump=0 tools/run-tests $(BUILD_SAN)

fuzz: deps
	cmake -S . -B $(BUILD_FUZZ) -DCMAKE_BUILD_TYPE=Debug -DASYNCPROBE_FUZZ=ON \
	  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ $(CMAKE_ARGS)
	cmake --build $(BUILD_FUZZ) -j $(JOBS) --target fuzz_targets
	tools/run-fuzz $(BUILD_FUZZ)

# Each step stops the chain on its first failure; reaching the last line means all were clean.
check: build format-check tidy test-san fuzz
	@echo "check: clang-format, clang-tidy, the tests under ASan+UBSan and every fuzz target: all clean"

demo: build
	tools/demo/run-demo $(BUILD)

bench: build
	tools/bench/run-all $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_SAN) $(BUILD_FUZZ)

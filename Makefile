# attnbench set-up in two commands: `make bench` and `make test`. Each installs the Debian
# packages that are missing (one apt-get update, then apt-get install), configures CMake into
# build/, builds, and runs. Everything else here is a step of those two.
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 600
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=
DEB_PACKAGES = cmake make gcc g++ pkg-config git libopenblas-dev libjansson-dev libcsv-dev python3 python3-numpy libopenmpi-dev openmpi-bin libsentencepiece-dev sentencepiece bible-kjv chromium libjs-chart.js
# `make fuzz` only: clang and its libFuzzer runtime (libclang_rt.fuzzer).
FUZZ_PACKAGES = clang-14 libclang-rt-14-dev
APT_GET    = $(if $(filter 0,$(shell id -u)),,sudo )apt-get

.PHONY: bench test test-slow deps build build-asan test-asan fuzz clean

# The default suite — and the GPU suite (suites/gpu.json) when this build has the CUDA backends
# and the binary's own device query (`attnbench list`) finds a GPU at run time; otherwise a line
# says why it was skipped — then the dashboard of what ran (written even when a record failed;
# the exit status is the first failing run's).
bench: build
	@$(BUILD)/attnbench run --config suites/ci.json; status=$$?; \
	latest=$$(ls -t results/*.json 2>/dev/null | head -1); \
	devs=$$($(BUILD)/attnbench list 2>/dev/null); \
	if ! echo "$$devs" | grep -q '^blockwise_cuda '; then \
	  echo "make bench: GPU suite skipped: this build has no CUDA backends (nvcc and cuBLAS were not found when it was configured)"; \
	elif echo "$$devs" | grep -q '^cuda backends (-)'; then \
	  echo "make bench: GPU suite skipped: $$(echo "$$devs" | sed -n 's/^cuda backends (-): \(.*\); they decline.*/\1/p')"; \
	else \
	  $(BUILD)/attnbench run --config suites/gpu.json; gstatus=$$?; [ $$status != 0 ] || status=$$gstatus; \
	  latest="$$latest $$(ls -t results/*.json 2>/dev/null | head -1)"; fi; \
	if [ -n "$$latest" ]; then $(BUILD)/attnbench report $$latest --out dashboards/index.html && \
	  echo "dashboard: $(CURDIR)/dashboards/index.html ($$latest)"; fi; exit $$status

test: build build-asan
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -LE slow
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) -LE slow

# The scheduled suite's tests (label slow): hours on 2 cores.
test-slow: build
	cd $(BUILD) && ctest --output-on-failure -L slow

deps:
	@missing=""; for p in $(DEB_PACKAGES) $(EXTRA_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(APT_GET) update -q && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -q $$missing; \
	fi

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)
	cmake --build $(BUILD) -j $(JOBS)

# AddressSanitizer + UBSan build: runs the cases with n ≤ 1000 once more (tests/CMakeLists.txt).
build-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATTN_SANITIZE=ON $(CMAKE_ARGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)

# libFuzzer under ASan+UBSan (clang, its own build dir): each tests/fuzz target for FUZZ_SECONDS
# (default 600) from its seed corpus; findings land in tests/fuzz/crashes/<target>/ (docs/fuzzing.md).
fuzz:
	$(MAKE) deps EXTRA_PACKAGES="$(FUZZ_PACKAGES)"
	CC=clang-14 CXX=clang++-14 cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATTN_FUZZ=ON \
	  -DATTN_WITH_CUDA=OFF -DATTN_WITH_MPI=OFF -DATTN_FUZZ_SECONDS=$(FUZZ_SECONDS) $(CMAKE_ARGS)
	cmake --build $(FUZZ_BUILD) -j $(JOBS)
	cd $(FUZZ_BUILD) && ctest --output-on-failure -j $(JOBS) -R '^fuzz_'  # fuzz_replay, then fuzz_<target>

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)

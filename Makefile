# A thin wrapper over CMake. The README's two commands are `make run` and
# `make test`; both install missing Debian packages first.
BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
LIB_BUILD  ?= build-lib
PREFIX     ?= /usr/local
DESTDIR    ?=
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_ARGS ?= --output-on-failure -j $(JOBS)

.PHONY: all deps build test test-normal test-asan test-tsan run demo bench install install-lib clean format faults-doc fuzz soak soak-valgrind

all: build

deps:
	@scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# Every test once normally, once under AddressSanitizer + UBSan, and the
# concurrency tests once more under ThreadSanitizer.
test: deps
	$(MAKE) test-normal
	$(MAKE) test-asan
	$(MAKE) test-tsan

test-normal: build
	cd $(BUILD) && ctest $(CTEST_ARGS)

test-asan:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCYNIC_SANITIZE=address,undefined
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest $(CTEST_ARGS)

test-tsan:
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCYNIC_SANITIZE=thread
	cmake --build $(TSAN_BUILD) -j $(JOBS)
	cd $(TSAN_BUILD) && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  $(CURDIR)/scripts/no-aslr.sh ctest $(CTEST_ARGS) -L concurrency

# cynic on the quickstart config in front of a demo backend behind
# cynic-harness, with the commands to try (scripts/run.py; Ctrl-C stops all).
run: deps build
	@python3 scripts/run.py --build $(BUILD)

# The narrated tour of the patterns, on free ports, in seconds (scripts/demo.py;
# also ctest demo/tour).
demo: deps build
	@python3 scripts/demo.py --build $(BUILD)

bench: deps build
	@scripts/deps.sh bench
	$(BUILD)/bench_lib
	$(BUILD)/bench_bucket
	$(BUILD)/bench_harness --harness $(BUILD)/cynic-harness --runs 5
	bench/tcp.sh $(BUILD)
	bench/tls.sh $(BUILD)
	bench/http.sh $(BUILD)

# Every libFuzzer target for FUZZ_SECONDS each (default 60), two at a time,
# after replaying fuzz/regressions/ (scripts/fuzz.sh). CI runs it after test.
FUZZ_SECONDS ?= 60
fuzz: deps
	@scripts/deps.sh fuzz
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

# The soak (bench/soak/soak.py, docs/soak.md): SOAK_SECONDS (default 600) of
# mixed traffic with faults injected and cleared through cynic-harness; CSV,
# PNG and a verdict in $(BUILD)/soak/. `make soak-valgrind`: a shorter run
# (SOAK_VALGRIND_SECONDS, default 60) with cynic under valgrind. Neither is
# part of `make test` nor CI.
SOAK_SECONDS ?= 600
SOAK_VALGRIND_SECONDS ?= 60
soak: deps build
	@scripts/deps.sh soak
	bench/soak/soak.py --build-dir $(BUILD) --duration $(SOAK_SECONDS) --out $(BUILD)/soak

soak-valgrind: deps build
	@scripts/deps.sh soak
	bench/soak/soak.py --build-dir $(BUILD) --valgrind --duration $(SOAK_VALGRIND_SECONDS) --out $(BUILD)/soak-valgrind

# docs/faults.md from a fresh run of the fault matrix (tests/faults/), TCP
# mode then HTTP mode; each matrix's last test fails when its part of the
# committed file no longer matches a run.
faults-doc: deps build
	cd tests/faults && CYNIC_BUILD_DIR=$(CURDIR)/$(BUILD) CYNIC_FAULTS_OUT=$(CURDIR)/$(BUILD)/faults/tcp.json \
	  pytest-3 -q -p no:cacheprovider test_fault_matrix_tcp.py --deselect test_fault_matrix_tcp.py::test_zz_doc_matches_this_run
	cd tests/faults && CYNIC_BUILD_DIR=$(CURDIR)/$(BUILD) CYNIC_FAULTS_OUT=$(CURDIR)/$(BUILD)/faults/http.json \
	  pytest-3 -q -p no:cacheprovider test_fault_matrix_http.py --deselect test_fault_matrix_http.py::test_zz_doc_matches_this_run
	scripts/faults-doc.py $(BUILD)/faults/tcp.json $(BUILD)/faults/http.json > docs/faults.md

# Reconfigures with PREFIX so cynic.pc names the directories it is installed to.
install:
	cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX)
	cmake --build $(BUILD) -j $(JOBS)
	DESTDIR=$(DESTDIR) cmake --install $(BUILD)

# libcynic alone (libraries, headers, cynic.pc): a lib-only build in its own
# directory, so neither the programs nor the tests (nor their packages) are
# needed. Needs only cmake, a C11 compiler and pthreads.
install-lib:
	cmake -S . -B $(LIB_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCYNIC_LIB_ONLY=ON -DCMAKE_INSTALL_PREFIX=$(PREFIX)
	cmake --build $(LIB_BUILD) -j $(JOBS) --target cynic_shared cynic_static
	DESTDIR=$(DESTDIR) cmake --install $(LIB_BUILD) --component lib

format:
	clang-format -i include/cynic/*.h lib/*.c tests/unit/*.c tests/unit/*.h bench/*.c examples/*.c

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(LIB_BUILD) build-fuzz

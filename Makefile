# attention.h: tests, examples and build checks. CC, CXX, CFLAGS, CXXFLAGS and BUILD may be overridden:
#   make test CC=clang BUILD=build/clang
CC ?= cc
CXX ?= g++
CFLAGS ?= -std=c99 -O2 -Wall -Wextra -Wpedantic -Werror
CXXFLAGS ?= -O2 -Wall -Wextra -Wpedantic -Werror
LDLIBS = -lm
BUILD ?= build

HEADER = attention.h
EXAMPLES = $(BUILD)/quickstart $(BUILD)/seq2seq_alignment $(BUILD)/self_attention_heatmap $(BUILD)/bert_padding \
           $(BUILD)/gpt_decode $(BUILD)/llama_decode $(BUILD)/vision_patches $(BUILD)/speech_alignment \
           $(BUILD)/train_tiny

.PHONY: all test install uninstall check-install check-accuracy mpi check-mpi test-neon test-sanitize test-valgrind test-tsan test-m32 fuzz lint examples run bench bench-table bench-ggml check-build clean

all: $(TEST_PATHS:%=$(BUILD)/test_%) examples

# The test suite, once per kernel path this machine can run: runtime dispatch (AVX-512 where the CPU has
# it), AVX2 (ATTN_NO_AVX512), the portable scalar reference (ATTN_NO_SIMD), OpenMP threads, and a
# -march=native build, and the dispatch path compiled as C11. The last line is the total "N passed, N failed".
TEST_PATHS = dispatch avx2 scalar openmp native c11
PATH_FLAGS_c11 = -std=c11
PATH_FLAGS_dispatch =
PATH_FLAGS_avx2 = -DATTN_NO_AVX512
PATH_FLAGS_nobf16dot = -DATTN_NO_BF16DOT
PATH_FLAGS_scalar = -DATTN_NO_SIMD
PATH_FLAGS_openmp = -fopenmp
PATH_FLAGS_native = -march=native -fopenmp

test:
	@$(MAKE) --no-print-directory $(TEST_JOBS_FLAG) test-binaries
	RUN_JOBS=$(RUN_JOBS) sh tests/run_paths.sh tests/data $(TEST_PATHS:%=$(BUILD)/test_%)

# make test compiles its binaries in parallel, one job per core, unless the command line asked for jobs
# already (make -j2 test shares its job slots; make -j1 test compiles one after another). The suites
# (tests/run_paths.sh: make test, test-neon, test-sanitize, test-valgrind, test-m32) run RUN_JOBS
# binaries at a time, one per core unless told (RUN_JOBS=1: one after another).
TEST_JOBS ?= $(shell nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
RUN_JOBS ?= $(TEST_JOBS)
TEST_JOBS_FLAG = $(if $(filter -j%,$(MAKEFLAGS)),,-j$(TEST_JOBS))
.PHONY: test-binaries
test-binaries: $(TEST_PATHS:%=$(BUILD)/test_%)
	@:

# Long-sequence accuracy (tests/accuracy.c): the max-norm relative error against float64 for N = 4096 to
# 65536 keys, D = 64 and 128, causal and not, and a decoding case, within 2e-6, on the dispatch (AVX-512
# where the CPU has it), AVX2 and scalar paths. Every path runs even when one fails; the target fails if any did.
ACCURACY_PATHS = dispatch avx2 scalar
check-accuracy: $(ACCURACY_PATHS:%=$(BUILD)/accuracy_%)
	@status=0; for p in $(ACCURACY_PATHS); do $(BUILD)/accuracy_$$p || status=1; done; exit $$status

$(BUILD)/accuracy_%: tests/accuracy.c $(HEADER) | $(BUILD)
	$(CC) $(CFLAGS) -O2 $(PATH_FLAGS_$*) -o $@ tests/accuracy.c $(LDLIBS)

# The tests that take more than about 0.1 s natively (random shapes, long rows, every K/V type): valgrind
# (~150x slower) and the aarch64 scalar build under qemu skip them, as other builds run them.
SLOW_TESTS = long_sequence long_keys_accuracy sdpa_half_kv sdpa_random sdpa_alibi sdpa_backward_random \
             sdpa_window_softcap_sinks sdpa_backward_options project_ex_threads mha_random q8_format \
             decode_gqa_groups sdpa_bf16dot kv_step_threads

# The NEON path: cross-built for aarch64 (Debian's gcc-aarch64-linux-gnu) and run under qemu-user, the
# whole suite in two halves (--shard, one qemu per core); and the portable scalar kernels built for
# aarch64 (ATTN_NO_SIMD) without SLOW_TESTS: the x86 scalar build runs those on the same code, and the
# NEON build on aarch64 (an aarch64 scalar run of them took 75 of its 88 s under qemu).
CROSS_CC ?= aarch64-linux-gnu-gcc
QEMU ?= qemu-aarch64
test-neon: $(BUILD)/test_neon $(BUILD)/test_neon_scalar
	RUN_WITH='$(QEMU)' RUN_JOBS=$(RUN_JOBS) sh tests/run_paths.sh tests/data "$(BUILD)/test_neon --shard=1/2" \
	    "$(BUILD)/test_neon --shard=2/2" "$(BUILD)/test_neon_scalar $(SLOW_TESTS:%=-%)"

$(BUILD)/test_neon: tests/test_attention.c tests/reference.h $(HEADER) | $(BUILD)
	$(CROSS_CC) $(CFLAGS) -static -o $@ tests/test_attention.c $(LDLIBS)
$(BUILD)/test_neon_scalar: tests/test_attention.c tests/reference.h $(HEADER) | $(BUILD)
	$(CROSS_CC) $(CFLAGS) -static -DATTN_NO_SIMD -o $@ tests/test_attention.c $(LDLIBS)

$(BUILD)/test_%: tests/test_attention.c tests/reference.h $(HEADER) | $(BUILD)
	$(CC) $(CFLAGS) $(PATH_FLAGS_$*) -o $@ tests/test_attention.c $(LDLIBS)

# Sanitizers: the whole suite under AddressSanitizer (with leak checks) + UndefinedBehaviorSanitizer, any
# report fatal, built with clang on the dispatch (AVX-512 here), AVX2, scalar and OpenMP paths and with gcc on
# the dispatch and scalar paths (its other two add nothing clang's do not check, for 90 s of CI).
SAN_FLAGS = -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
# (the slowest first: the binaries run RUN_JOBS at a time)
SAN_PATHS = scalar dispatch avx2 openmp
SAN_PATHS_GCC = scalar dispatch
SAN_BINS = $(SAN_PATHS:%=$(BUILD)/san/clang_%) $(SAN_PATHS_GCC:%=$(BUILD)/san/gcc_%)
test-sanitize: $(SAN_BINS)
	ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=tests/lint/lsan.supp UBSAN_OPTIONS=print_stacktrace=1 \
	    RUN_JOBS=$(RUN_JOBS) sh tests/run_paths.sh tests/data $(SAN_BINS)

$(BUILD)/san/clang_%: tests/test_attention.c tests/reference.h $(HEADER) | $(BUILD)
	@mkdir -p $(BUILD)/san
	clang $(CFLAGS) $(SAN_FLAGS) $(PATH_FLAGS_$*) -o $@ tests/test_attention.c $(LDLIBS)

$(BUILD)/san/gcc_%: tests/test_attention.c tests/reference.h $(HEADER) | $(BUILD)
	@mkdir -p $(BUILD)/san
	gcc $(CFLAGS) $(SAN_FLAGS) $(PATH_FLAGS_$*) -o $@ tests/test_attention.c $(LDLIBS)

# valgrind memcheck (uninitialised reads, which ASan does not see) over the suite on the AVX2 path
# (valgrind has no AVX-512), without SLOW_TESTS: valgrind runs this code ~150x slower, and those tests
# run under ASan and UBSan in test-sanitize and test-m32. valgrind is single-threaded: the tests are
# shared between RUN_JOBS processes (--shard). The scalar path (vg_scalar) the same way with
# VG_BINS="vg_avx2 vg_scalar". OpenMP builds are left to ASan and TSan: libgomp's thread stacks show up as
# "possibly lost".
VALGRIND = valgrind -q --error-exitcode=1 --leak-check=full
VG_SKIP = $(SLOW_TESTS:%=-%)
VG_BINS = vg_avx2
VG_SHARDS = $(shell seq 1 $(RUN_JOBS))
test-valgrind: $(VG_BINS:%=$(BUILD)/%)
	RUN_WITH='$(VALGRIND)' RUN_JOBS=$(RUN_JOBS) sh tests/run_paths.sh tests/data \
	    $(foreach b,$(VG_BINS),$(foreach k,$(VG_SHARDS),"$(BUILD)/$(b) $(VG_SKIP) --shard=$(k)/$(RUN_JOBS)"))

$(BUILD)/vg_avx2: tests/test_attention.c tests/reference.h $(HEADER) | $(BUILD)
	$(CC) $(CFLAGS) -g -DATTN_NO_AVX512 -o $@ tests/test_attention.c $(LDLIBS)

$(BUILD)/vg_scalar: tests/test_attention.c tests/reference.h $(HEADER) | $(BUILD)
	$(CC) $(CFLAGS) -g -DATTN_NO_SIMD -o $@ tests/test_attention.c $(LDLIBS)

# ThreadSanitizer: concurrent calls from pthreads (tests/tsan_concurrent.c), then the same with OpenMP
# teams inside. libomp is not instrumented: its Archer tool (shipped with libomp, loaded automatically
# under TSan) supplies OpenMP's synchronisation, and ignore_noninstrumented_modules hides libomp's own
# internals; without them TSan reports false races inside libomp.
TSAN_FLAGS = -g -fsanitize=thread
test-tsan: $(BUILD)/tsan_pthreads $(BUILD)/tsan_openmp
	$(BUILD)/tsan_pthreads
	TSAN_OPTIONS=ignore_noninstrumented_modules=1 $(BUILD)/tsan_openmp

$(BUILD)/tsan_pthreads: tests/tsan_concurrent.c $(HEADER) | $(BUILD)
	clang $(CFLAGS) $(TSAN_FLAGS) -o $@ tests/tsan_concurrent.c $(LDLIBS) -lpthread

$(BUILD)/tsan_openmp: tests/tsan_concurrent.c $(HEADER) | $(BUILD)
	clang $(CFLAGS) $(TSAN_FLAGS) -fopenmp -o $@ tests/tsan_concurrent.c $(LDLIBS) -lpthread

# 32-bit x86 (gcc -m32, Debian's gcc-12-multilib): size_t and ptrdiff_t of 32 bits, so the overflow checks
# meet their limits sooner; the kernels are the scalar ones there (the SIMD dispatch is x86-64 only). The
# suite plain, with OpenMP, and under ASan+UBSan.
# (the slowest first: the binaries run RUN_JOBS at a time)
M32_BINS = $(BUILD)/m32_san $(BUILD)/m32 $(BUILD)/m32_openmp
test-m32: $(M32_BINS)
	RUN_JOBS=$(RUN_JOBS) sh tests/run_paths.sh tests/data $(M32_BINS)

$(BUILD)/m32: tests/test_attention.c tests/reference.h $(HEADER) | $(BUILD)
	gcc -m32 $(CFLAGS) -o $@ tests/test_attention.c $(LDLIBS)
$(BUILD)/m32_openmp: tests/test_attention.c tests/reference.h $(HEADER) | $(BUILD)
	gcc -m32 $(CFLAGS) -fopenmp -o $@ tests/test_attention.c $(LDLIBS)
$(BUILD)/m32_san: tests/test_attention.c tests/reference.h $(HEADER) | $(BUILD)
	gcc -m32 $(CFLAGS) $(SAN_FLAGS) -o $@ tests/test_attention.c $(LDLIBS)

# Static analysis of the header through tests/lint/lint_tu.c (the implementation, every kernel):
# cppcheck on the x86-64 (SIMD) and portable configurations, suppressions each justified in
# tests/lint/cppcheck.supp; clang-tidy bugprone-* and cert-* as errors, on the dispatch, scalar, OpenMP
# and ATTN_STATIC builds, except five checks:
#   bugprone-easily-swappable-parameters: the public API's adjacent int sizes (n, d_in, d_out), as in
#     BLAS; changing it is not a lint fix.
#   bugprone-implicit-widening-of-multiplication-result: int products of tile indices (r * ATTN__TK,
#     c * ATTN__TQ) used as offsets; each stays below the tile workspace, which attn__sdpa_ws_floats
#     keeps under INT_MAX floats (the one real overflow this check found, for Dk + Dv near 2^26).
#   bugprone-macro-parentheses: the micro-kernel's row macros (ATTN__ACC, ATTN__FMA_ROW, ATTN__STORE_ROW)
#     paste their argument into names (c##r##0), which cannot be parenthesised.
#   cert-err33-c: attn_heatmap_print writes with fputc/fprintf and checks the stream once at the end
#     with ferror (stdio's error indicator is sticky), returning ATTN_ERR_IO.
#   bugprone-not-null-terminated-result: the PNM header of attn_image_write is a byte buffer written
#     with its length, not a C string.
CPPCHECK = cppcheck --std=c99 --enable=warning,style,portability,performance --error-exitcode=1 --quiet \
	--suppressions-list=tests/lint/cppcheck.supp -I.
TIDY_CHECKS = -*,bugprone-*,cert-*,-bugprone-easily-swappable-parameters,-bugprone-implicit-widening-of-multiplication-result,-bugprone-macro-parentheses,-cert-err33-c,-bugprone-not-null-terminated-result
# One target per run (make -j2 lint runs two at a time).
TIDY_FLAGS_dispatch =
TIDY_FLAGS_scalar = -DATTN_NO_SIMD
TIDY_FLAGS_openmp = -fopenmp
TIDY_FLAGS_static = -DATTN_STATIC
LINT_RUNS = lint-cppcheck-x86_64 lint-cppcheck-portable $(addprefix lint-tidy-,dispatch scalar openmp static)
.PHONY: $(LINT_RUNS)
lint: $(LINT_RUNS)
lint-cppcheck-x86_64:
	$(CPPCHECK) --platform=unix64 -D__x86_64__ -D__GNUC__ -I$$(gcc -print-file-name=include) tests/lint/lint_tu.c
lint-cppcheck-portable:
	$(CPPCHECK) tests/lint/lint_tu.c
$(filter lint-tidy-%,$(LINT_RUNS)): lint-tidy-%:
	clang-tidy -quiet -checks='$(TIDY_CHECKS)' -warnings-as-errors='*' -header-filter='attention\.h' \
	    tests/lint/lint_tu.c -- -std=c99 -I. $(TIDY_FLAGS_$*)

# Fuzzing with clang's libFuzzer (+ ASan, UBSan): one harness per public entry point, all in
# tests/fuzz/fuzz_attention.c and compiled once, into $(BUILD)/fuzz/fuzz_attention; $(BUILD)/fuzz/fuzz_<name>
# is a symbolic link to it, which runs harness <name> (the program's name chooses). Each runs FUZZ_SECONDS
# from its committed seeds tests/fuzz/corpus/<name>/; new inputs go to $(BUILD)/fuzz/corpus_<name>/ and a
# failing input to $(BUILD)/fuzz/crash-*; its log is $(BUILD)/fuzz/<name>.log. One harness:
# make fuzz-run-<name>; `make -j2 fuzz` runs two at a time. Replay one: $(BUILD)/fuzz/fuzz_<name> $(BUILD)/fuzz/crash-...
FUZZ_TARGETS = project project_ex scores softmax weighted_sum merge rope sdpa sdpa_backward self_forward cross_forward \
               align_scores align_forward hardmax topk sample image_write
FUZZ_SECONDS ?= 60
FUZZ_FLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_RUNS = $(FUZZ_TARGETS:%=fuzz-run-%)
.PHONY: $(FUZZ_RUNS)
fuzz: $(FUZZ_RUNS)
$(FUZZ_RUNS): fuzz-run-%: $(BUILD)/fuzz/fuzz_%
	@mkdir -p $(BUILD)/fuzz/corpus_$*
	@$(BUILD)/fuzz/fuzz_$* -max_total_time=$(FUZZ_SECONDS) -max_len=512 -len_control=0 -timeout=20 \
	    -artifact_prefix=$(BUILD)/fuzz/ $(BUILD)/fuzz/corpus_$* tests/fuzz/corpus/$* \
	    > $(BUILD)/fuzz/$*.log 2>&1 || { tail -n 40 $(BUILD)/fuzz/$*.log; echo "fuzz_$* FAILED"; exit 1; }
	@echo "fuzz_$*: ok, $$(grep -o 'Done [0-9]* runs' $(BUILD)/fuzz/$*.log) in $(FUZZ_SECONDS) s"

$(BUILD)/fuzz/fuzz_attention: tests/fuzz/fuzz_attention.c tests/reference.h $(HEADER) | $(BUILD)
	@mkdir -p $(BUILD)/fuzz
	clang -std=c99 -Wall -Wextra -Wpedantic -Werror $(FUZZ_FLAGS) -o $@ tests/fuzz/fuzz_attention.c $(LDLIBS)

$(FUZZ_TARGETS:%=$(BUILD)/fuzz/fuzz_%): $(BUILD)/fuzz/fuzz_attention
	ln -sf fuzz_attention $@

examples: $(EXAMPLES)

# build and run the quick-start example
run: $(BUILD)/quickstart
	$(BUILD)/quickstart

$(BUILD)/%: examples/%.c $(HEADER) | $(BUILD)
	$(CC) $(CFLAGS) -I. -o $@ $< $(LDLIBS)

# Sequence-parallel attention over MPI (examples/mpi_ring_attention.c, docs/ring_attention.md), built with
# Open MPI's mpicc (Debian: openmpi-bin, libopenmpi-dev); skipped with a message when there is no mpicc.
#   mpirun --allow-run-as-root --oversubscribe -np 4 build/mpi_ring_attention
# make check-mpi runs it with 2 and 4 ranks, causal and not, and its bad inputs (tests/mpi/check_mpi.sh).
MPICC ?= mpicc
MPIRUN ?= mpirun --allow-run-as-root --oversubscribe
HAVE_MPICC = $(shell command -v $(firstword $(MPICC)) >/dev/null 2>&1 && echo yes)
ifeq ($(HAVE_MPICC),yes)
mpi: $(BUILD)/mpi_ring_attention
check-mpi: $(BUILD)/mpi_ring_attention
	MPIRUN='$(MPIRUN)' sh tests/mpi/check_mpi.sh $(BUILD)/mpi_ring_attention
else
mpi check-mpi:
	@echo "$@: no $(firstword $(MPICC)) (Debian: apt-get install openmpi-bin libopenmpi-dev); MPI example skipped"
endif

$(BUILD)/mpi_ring_attention: examples/mpi_ring_attention.c $(HEADER) | $(BUILD)
	$(MPICC) $(CFLAGS) -I. -o $@ examples/mpi_ring_attention.c $(LDLIBS)

# The implementation compiles without a warning under -Wconversion -Wsign-conversion (users build with them).
CONVERSION_FLAGS = -Wconversion -Wsign-conversion

# Build checks: the README's quick start is examples/quickstart.c line for line, and compiles and runs as
# written; the header
# compiles as C++11 and C++17 and as C11; one implementation file plus a declarations-only file link
# into one program; ATTN_STATIC with the implementation in two files links without clashes;
# ATTN_NO_STDIO builds without <stdio.h>; the implementation is clean under -Wconversion -Wsign-conversion
# on every kernel path; and the benchmark programs build (bench/decode_probe.c on
# AVX2 and AVX-512 machines only) without warnings. Each check is a target of its own
# (check-build-<name>), so make -j2 check-build runs two at a time.
CONVERSION_PATHS = dispatch scalar avx2 nobf16dot openmp
CHECK_BUILD = readme c11 cplusplus11 cplusplus17 link static no_stdio $(CONVERSION_PATHS:%=conversion_%) bench decode_probe
.PHONY: $(CHECK_BUILD:%=check-build-%)
check-build: $(CHECK_BUILD:%=check-build-%)
check-build-readme: | $(BUILD)
	awk '/<!-- snippet: quickstart -->/ {f = 1; next} f && /^```c/ {g = 1; next} g && /^```/ {exit} g' \
	    README.md > $(BUILD)/readme_quickstart.c
	test -s $(BUILD)/readme_quickstart.c
	diff examples/quickstart.c $(BUILD)/readme_quickstart.c
	$(CC) $(CFLAGS) -I. -o $(BUILD)/readme_quickstart $(BUILD)/readme_quickstart.c $(LDLIBS)
	$(BUILD)/readme_quickstart
check-build-c11: | $(BUILD)
	$(CC) $(filter-out -std=%,$(CFLAGS)) -std=c11 -o $(BUILD)/link_c11 tests/build/link_main.c tests/build/link_other.c $(LDLIBS)
	$(BUILD)/link_c11
check-build-cplusplus11 check-build-cplusplus17: check-build-cplusplus%: | $(BUILD)
	$(CXX) $(CXXFLAGS) -std=c++$* -o $(BUILD)/cplusplus$* tests/build/cplusplus.cpp $(LDLIBS)
	$(BUILD)/cplusplus$*
check-build-link: | $(BUILD)
	$(CC) $(CFLAGS) -o $(BUILD)/link tests/build/link_main.c tests/build/link_other.c $(LDLIBS)
	$(BUILD)/link
check-build-static: | $(BUILD)
	$(CC) $(CFLAGS) -o $(BUILD)/static tests/build/static_a.c tests/build/static_b.c $(LDLIBS)
	$(BUILD)/static
check-build-no_stdio: | $(BUILD)
	$(CC) $(CFLAGS) -o $(BUILD)/no_stdio tests/build/no_stdio.c $(LDLIBS)
	$(BUILD)/no_stdio
$(CONVERSION_PATHS:%=check-build-conversion_%): check-build-conversion_%: | $(BUILD)
	$(CC) $(CFLAGS) $(CONVERSION_FLAGS) $(PATH_FLAGS_$*) -c -o $(BUILD)/conversion_$*.o tests/lint/lint_tu.c
check-build-bench: | $(BUILD)
	$(CC) $(BENCH_FLAGS) -Wall -Wextra -Werror -o $(BUILD)/bench_check bench/bench.c -lm
	$(BUILD)/bench_check --list > /dev/null
check-build-decode_probe: | $(BUILD)
	if echo | $(CC) -march=native -dM -E - | grep -q __AVX2__; then \
	    $(CC) $(BENCH_FLAGS) -Wall -Wextra -Werror -o $(BUILD)/decode_probe bench/decode_probe.c -lm; fi

# The benchmark (bench/README.md): make bench, or make bench BLAS=openblas (Debian's libopenblas-dev) to
# measure the sgemm -> softmax -> sgemm composition beside attention.h. BENCH_ARGS passes options. The
# output is also saved in BENCH_OUT, after a line with the command and one with the date; make bench-table
# prints the Markdown table of bench/RESULTS.md from it (bench/results_table.py; the run must have finished:
# its bench: lines come last). python3 bench/results_table.py bench/results/run*.txt: the table in RESULTS.md.
BENCH_FLAGS = -std=c99 -O2 -march=native -fopenmp
ifeq ($(BLAS),openblas)
BENCH_FLAGS += -DBENCH_OPENBLAS
BENCH_LIBS = -lopenblas
endif
BENCH_OUT ?= $(BUILD)/bench.txt
bench: $(HEADER) bench/bench.c | $(BUILD)
	$(CC) $(BENCH_FLAGS) -o $(BUILD)/bench bench/bench.c $(BENCH_LIBS) -lm
	@{ echo "command: make bench$(if $(BLAS), BLAS=$(BLAS))$(if $(BENCH_ARGS), BENCH_ARGS='$(BENCH_ARGS)')"; \
	   date -u '+date: %Y-%m-%d'; } > $(BENCH_OUT)
	$(BUILD)/bench $(BENCH_ARGS) | tee -a $(BENCH_OUT)
	@grep -q '^bench: ' $(BENCH_OUT) && echo "saved in $(BENCH_OUT); make bench-table prints its table"

bench-table:
	python3 bench/results_table.py $(BENCH_OUT)

# ggml's flash attention on the decoding cases, the ggml column of the table (bench/ggml_bench.c says how
# to build ggml from a llama.cpp tree): make bench-ggml GGML=llama.cpp GGML_BUILD=ggml-build >> the run's file.
GGML_LIBS = $(GGML_BUILD)/src/libggml.a $(GGML_BUILD)/src/libggml-cpu.a $(GGML_BUILD)/src/libggml-base.a
bench-ggml: bench/ggml_bench.c | $(BUILD)
	@test -n "$(GGML)" -a -n "$(GGML_BUILD)" || { echo "make bench-ggml GGML=<llama.cpp tree> GGML_BUILD=<its ggml build>" >&2; exit 2; }
	@$(CC) -std=c11 -O2 -march=native -fopenmp -Wall -Wextra -I$(GGML)/ggml/include -o $(BUILD)/ggml_bench \
	    bench/ggml_bench.c $(GGML_LIBS) -lstdc++ -lm
	@$(BUILD)/ggml_bench

# Install: the header in $(DESTDIR)$(PREFIX)/include, a pkg-config file in lib/pkgconfig (pkg-config
# --cflags --libs attention: the include path and -lm) and a CMake package in lib/cmake/attention
# (find_package(attention CONFIG REQUIRED), target attention::attention). The version is the header's
# ATTN_VERSION_STRING. The CMake package finds its prefix from its own place, so a staged (DESTDIR) or moved
# tree works; the pkg-config file names $(PREFIX). uninstall removes these files, and the directory
# lib/cmake/attention when nothing else is left in it.
PREFIX ?= /usr/local
INSTALL ?= install
ATTN_VERSION = $(shell sed -n 's/^\#define ATTN_VERSION_STRING "\(.*\)"/\1/p' $(HEADER))
INSTALL_FILES = include/attention.h lib/pkgconfig/attention.pc lib/cmake/attention/attentionConfig.cmake \
                lib/cmake/attention/attentionConfigVersion.cmake

# attention.pc and attentionConfigVersion.cmake are written straight into place, so that `sudo make
# install` leaves no root-owned file in the source tree.
install:
	test -n "$(ATTN_VERSION)"
	$(INSTALL) -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/lib/cmake/attention
	$(INSTALL) -m 644 $(HEADER) $(DESTDIR)$(PREFIX)/include/attention.h
	sed -e 's|@ATTN_PREFIX@|$(PREFIX)|' -e 's|@ATTN_VERSION@|$(ATTN_VERSION)|' packaging/attention.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/attention.pc
	sed -e 's|@ATTN_VERSION@|$(ATTN_VERSION)|' packaging/attentionConfigVersion.cmake.in \
	    > $(DESTDIR)$(PREFIX)/lib/cmake/attention/attentionConfigVersion.cmake
	$(INSTALL) -m 644 packaging/attentionConfig.cmake $(DESTDIR)$(PREFIX)/lib/cmake/attention/attentionConfig.cmake
	chmod 644 $(DESTDIR)$(PREFIX)/lib/pkgconfig/attention.pc \
	    $(DESTDIR)$(PREFIX)/lib/cmake/attention/attentionConfigVersion.cmake

uninstall:
	rm -f $(INSTALL_FILES:%=$(DESTDIR)$(PREFIX)/%)
	rmdir $(DESTDIR)$(PREFIX)/lib/cmake/attention 2>/dev/null || true

# The installed package used three ways by tests/consumer (a 2x2 attn_sdpa checked against its value):
# compiled with pkg-config's flags against a DESTDIR install, built by CMake through find_package with
# CMAKE_PREFIX_PATH at that install, and through add_subdirectory of this repository (which must not
# build the tests or examples there). CMake's install rules must give the same files as make install,
# and make uninstall must leave no file behind. The consumer is compiled with CFLAGS each time. Needs
# cmake (3.15 or later, for cmake --install) and pkg-config.
CHECK_INSTALL = $(abspath $(BUILD))/check-install
CHECK_PREFIX = /opt/attention
check-install: | $(BUILD)
	rm -rf $(CHECK_INSTALL)
	$(MAKE) --no-print-directory install DESTDIR=$(CHECK_INSTALL)/stage PREFIX=$(CHECK_PREFIX)
	test "$$(PKG_CONFIG_LIBDIR=$(CHECK_INSTALL)/stage$(CHECK_PREFIX)/lib/pkgconfig pkg-config --modversion attention)" = "$(ATTN_VERSION)"
	flags="$$(PKG_CONFIG_LIBDIR=$(CHECK_INSTALL)/stage$(CHECK_PREFIX)/lib/pkgconfig \
	    PKG_CONFIG_SYSROOT_DIR=$(CHECK_INSTALL)/stage pkg-config --cflags --libs attention)" && echo "pkg-config: $$flags" && \
	    $(CC) $(CFLAGS) -o $(CHECK_INSTALL)/consumer_pkgconfig tests/consumer/consumer.c $$flags
	$(CHECK_INSTALL)/consumer_pkgconfig
	cmake -S tests/consumer -B $(CHECK_INSTALL)/find_package -DCMAKE_PREFIX_PATH=$(CHECK_INSTALL)/stage$(CHECK_PREFIX) \
	    -DATTENTION_VERSION_WANTED=$(ATTN_VERSION) \
	    -DCMAKE_C_COMPILER=$(CC) -DCMAKE_C_FLAGS="$(CFLAGS)" > $(CHECK_INSTALL)/find_package.log
	cmake --build $(CHECK_INSTALL)/find_package >> $(CHECK_INSTALL)/find_package.log
	$(CHECK_INSTALL)/find_package/consumer
	cmake -S tests/consumer -B $(CHECK_INSTALL)/add_subdirectory -DATTENTION_SOURCE_DIR=$(CURDIR) \
	    -DCMAKE_C_COMPILER=$(CC) -DCMAKE_C_FLAGS="$(CFLAGS)" > $(CHECK_INSTALL)/add_subdirectory.log
	cmake --build $(CHECK_INSTALL)/add_subdirectory >> $(CHECK_INSTALL)/add_subdirectory.log
	$(CHECK_INSTALL)/add_subdirectory/consumer
	cmake -S . -B $(CHECK_INSTALL)/cmake -DATTENTION_BUILD_TESTS=OFF -DATTENTION_BUILD_EXAMPLES=OFF \
	    -DATTENTION_INSTALL=ON > $(CHECK_INSTALL)/cmake.log
	DESTDIR=$(CHECK_INSTALL)/cmake_stage cmake --install $(CHECK_INSTALL)/cmake --prefix $(CHECK_PREFIX) >> $(CHECK_INSTALL)/cmake.log
	diff -r $(CHECK_INSTALL)/stage $(CHECK_INSTALL)/cmake_stage
	$(MAKE) --no-print-directory uninstall DESTDIR=$(CHECK_INSTALL)/stage PREFIX=$(CHECK_PREFIX)
	test -z "$$(find $(CHECK_INSTALL)/stage -type f)"
	@echo "check-install: ok (pkg-config, find_package, add_subdirectory; CMake install = make install; uninstall)"

$(BUILD):
	mkdir -p $(BUILD)

clean:
	rm -rf build

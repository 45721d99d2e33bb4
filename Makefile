# attention.h: tests, examples and build checks. CC, CXX, CFLAGS, CXXFLAGS and BUILD may be overridden:
#   make test CC=clang BUILD=build/clang
CC ?= cc
CXX ?= g++
CFLAGS ?= -std=c99 -O2 -Wall -Wextra -Wpedantic -Werror
CXXFLAGS ?= -O2 -Wall -Wextra -Wpedantic -Werror
LDLIBS = -lm
BUILD ?= build

HEADER = attention.h
EXAMPLES = $(BUILD)/quickstart $(BUILD)/seq2seq_alignment $(BUILD)/self_attention_heatmap

.PHONY: all test test-neon examples run bench check-build clean

all: $(TEST_PATHS:%=$(BUILD)/test_%) examples

# The test suite, once per kernel path this machine can run: runtime dispatch (AVX-512 where the CPU has
# it), AVX2 (ATTN_NO_AVX512), the portable scalar reference (ATTN_NO_SIMD), OpenMP threads, and a
# -march=native build. The last line is the total "N passed, N failed".
TEST_PATHS = dispatch avx2 scalar openmp native
PATH_FLAGS_dispatch =
PATH_FLAGS_avx2 = -DATTN_NO_AVX512
PATH_FLAGS_scalar = -DATTN_NO_SIMD
PATH_FLAGS_openmp = -fopenmp
PATH_FLAGS_native = -march=native -fopenmp

test: $(TEST_PATHS:%=$(BUILD)/test_%)
	sh tests/run_paths.sh tests/data $(TEST_PATHS:%=$(BUILD)/test_%)

# The NEON path: cross-built for aarch64 (Debian's gcc-aarch64-linux-gnu) and run under qemu-user.
CROSS_CC ?= aarch64-linux-gnu-gcc
QEMU ?= qemu-aarch64
test-neon: $(HEADER) | $(BUILD)
	$(CROSS_CC) $(CFLAGS) -static -o $(BUILD)/test_neon tests/test_attention.c $(LDLIBS)
	$(CROSS_CC) $(CFLAGS) -static -DATTN_NO_SIMD -o $(BUILD)/test_neon_scalar tests/test_attention.c $(LDLIBS)
	QEMU=$(QEMU) sh tests/run_paths.sh tests/data $(BUILD)/test_neon $(BUILD)/test_neon_scalar

$(BUILD)/test_%: tests/test_attention.c $(HEADER) | $(BUILD)
	$(CC) $(CFLAGS) $(PATH_FLAGS_$*) -o $@ tests/test_attention.c $(LDLIBS)

examples: $(EXAMPLES)

# build and run the quick-start example
run: $(BUILD)/quickstart
	./$(BUILD)/quickstart

$(BUILD)/%: examples/%.c $(HEADER) | $(BUILD)
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

# Build checks: the README's quick start and seq2seq snippet compile and run as written; the header
# compiles as C++11 and C++17 and as C11; one implementation file plus a declarations-only file link
# into one program; ATTN_STATIC with the implementation in two files links without clashes; and
# ATTN_NO_STDIO builds without <stdio.h>.
check-build: $(HEADER) | $(BUILD)
	awk '/<!-- snippet: quickstart -->/ {f = 1; next} f && /^```c/ {g = 1; next} g && /^```/ {exit} g' \
	    README.md > $(BUILD)/readme_quickstart.c
	test -s $(BUILD)/readme_quickstart.c
	$(CC) $(CFLAGS) -I. -o $(BUILD)/readme_quickstart $(BUILD)/readme_quickstart.c $(LDLIBS)
	./$(BUILD)/readme_quickstart
	awk '/<!-- snippet: seq2seq -->/ {f = 1; next} f && /^```c/ {g = 1; next} g && /^```/ {exit} g' \
	    README.md > $(BUILD)/readme_seq2seq.c
	test -s $(BUILD)/readme_seq2seq.c
	$(CC) $(CFLAGS) -I. -o $(BUILD)/readme_seq2seq $(BUILD)/readme_seq2seq.c $(LDLIBS)
	./$(BUILD)/readme_seq2seq
	$(CC) $(filter-out -std=%,$(CFLAGS)) -std=c11 -o $(BUILD)/link_c11 tests/build/link_main.c tests/build/link_other.c $(LDLIBS)
	./$(BUILD)/link_c11
	$(CXX) $(CXXFLAGS) -std=c++11 -o $(BUILD)/cplusplus11 tests/build/cplusplus.cpp $(LDLIBS)
	./$(BUILD)/cplusplus11
	$(CXX) $(CXXFLAGS) -std=c++17 -o $(BUILD)/cplusplus17 tests/build/cplusplus.cpp $(LDLIBS)
	./$(BUILD)/cplusplus17
	$(CC) $(CFLAGS) -o $(BUILD)/link tests/build/link_main.c tests/build/link_other.c $(LDLIBS)
	./$(BUILD)/link
	$(CC) $(CFLAGS) -o $(BUILD)/static tests/build/static_a.c tests/build/static_b.c $(LDLIBS)
	./$(BUILD)/static
	$(CC) $(CFLAGS) -o $(BUILD)/no_stdio tests/build/no_stdio.c $(LDLIBS)
	./$(BUILD)/no_stdio

# The benchmark (bench/README.md): make bench, or make bench BLAS=openblas (Debian's libopenblas-dev) to
# measure the sgemm -> softmax -> sgemm composition beside attention.h. BENCH_ARGS passes options.
BENCH_FLAGS = -std=c99 -O2 -march=native -fopenmp
ifeq ($(BLAS),openblas)
BENCH_FLAGS += -DBENCH_OPENBLAS
BENCH_LIBS = -lopenblas
endif
bench: $(HEADER) bench/bench.c | $(BUILD)
	$(CC) $(BENCH_FLAGS) -o $(BUILD)/bench bench/bench.c $(BENCH_LIBS) -lm
	./$(BUILD)/bench $(BENCH_ARGS)

$(BUILD):
	mkdir -p $(BUILD)

clean:
	rm -rf build

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

.PHONY: all test examples run check-build clean

all: $(BUILD)/test_attention examples

# the test suite; its last line is "N passed, N failed"
test: $(BUILD)/test_attention
	./$(BUILD)/test_attention tests/data

examples: $(EXAMPLES)

# build and run the quick-start example
run: $(BUILD)/quickstart
	./$(BUILD)/quickstart

$(BUILD)/test_attention: tests/test_attention.c $(HEADER) | $(BUILD)
	$(CC) $(CFLAGS) -o $@ tests/test_attention.c $(LDLIBS)

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

$(BUILD):
	mkdir -p $(BUILD)

clean:
	rm -rf build

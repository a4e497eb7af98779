# SegBlocks ROS — developer commands.
#   make test   fresh virtual environment, install, CUDA compile check, pytest
#   make demo   node + synthetic camera in real ROS 2, live tau changes, PNGs in demo_output/

PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
NVCC        ?= nvcc
CUDA_ARCHS  ?= 87 89 90
PY          := $(VENV)/bin/python
PIP         := $(PY) -m pip --disable-pip-version-check -q
CU_SOURCES  := $(wildcard csrc/ops/cuda/*.cu)
LAUNCH_SOURCES := $(wildcard csrc/ops/cuda/*_launch.cpp)
CUTLASS_SOURCES := $(wildcard csrc/ops/cuda/cutlass/*.cu)
# the halo-tile convolution probe's kernels (benchmarks/halo_conv_probe.py builds them on the
# GPU host; compiled here so a broken one shows before a device call)
PROBE_SOURCES := $(wildcard benchmarks/halo_conv_probe/*.cu)
CUTLASS_JOBS ?= 2
CXX         ?= g++
# the defines torch's extension build passes to nvcc (half/bfloat16 only through intrinsics)
CU_DEFINES  := -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ \
               -D__CUDA_NO_BFLOAT16_CONVERSIONS__ -D__CUDA_NO_HALF2_OPERATORS__
BUILD_DIR   := build/cuda-check
export OMP_NUM_THREADS ?= 2

.PHONY: test venv install cuda-check cuda-launcher-check cutlass-check probe-check pytest demo bench-cpu clean

test:
	rm -rf $(VENV)
	$(MAKE) venv install cuda-check pytest

venv:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel
	$(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -r requirements-test.txt

install:
	$(PIP) install --no-build-isolation -e .
	$(PY) -c "import segblocks_core as s; print(s.backend_message())"

# Every CUDA kernel file compiles without torch headers; check each for Jetson Orin (sm_87),
# Ada (sm_89) and Hopper (sm_90). Fails if nvcc is missing while .cu files exist.
cuda-check:
	@if [ -z "$(CU_SOURCES)" ]; then echo "cuda-check: no .cu files"; exit 0; fi; \
	command -v $(NVCC) >/dev/null || { echo "cuda-check: nvcc not found"; exit 1; }; \
	mkdir -p $(BUILD_DIR); \
	for f in $(CU_SOURCES); do for a in $(CUDA_ARCHS); do \
	  echo "nvcc -c $$f (sm_$$a)"; \
	  $(NVCC) -std=c++17 -O2 -Icsrc $(CU_DEFINES) -gencode arch=compute_$$a,code=sm_$$a -c $$f \
	    -o $(BUILD_DIR)/$$(basename $$f .cu)_sm$$a.o || exit 1; \
	done; done
	@$(MAKE) --no-print-directory cuda-launcher-check
	@$(MAKE) --no-print-directory cutlass-check
	@$(MAKE) --no-print-directory probe-check

# The torch-facing CUDA launchers (*_launch.cpp) need torch's CUDA headers, which the CPU
# wheel lacks: compile them with g++ against stand-ins for c10/cuda (test/cuda_launcher_stubs)
# and nvcc's CUDA runtime headers, then check that every segblocks::cuda symbol they call is
# defined by the kernel objects of cuda-check (an instantiation missing for one dtype only
# shows when the extension is loaded on a GPU host otherwise).
cuda-launcher-check:
	@test -x $(PY) || { echo "cuda-launcher-check: needs $(PY) with torch (make venv)"; exit 1; }
	@inc=$$($(NVCC) -v --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/.*INCLUDES="\([^"]*\)".*/\1/p' | head -1); \
	tinc=$$($(PY) -c "import torch.utils.cpp_extension as c; print(' '.join('-I' + p for p in c.include_paths()))"); \
	mkdir -p $(BUILD_DIR)/launch; \
	for f in $(LAUNCH_SOURCES); do echo "g++ -c $$f"; \
	  $(CXX) -std=c++20 -O0 -c -Icsrc -Itest/cuda_launcher_stubs $$tinc $$inc $$f \
	    -o $(BUILD_DIR)/launch/$$(basename $$f .cpp).o || exit 1; \
	done
	@for a in $(CUDA_ARCHS); do \
	  test/cuda_launcher_stubs/check_symbols.sh "cuda-launcher-check (sm_$$a)" "$(BUILD_DIR)/launch/*.o" \
	    "$(patsubst csrc/ops/cuda/%.cu,$(BUILD_DIR)/%_sm$$a.o,$(CU_SOURCES))" || exit 1; \
	done

# The CUTLASS convolutions (segblocks_core._cutlass: Hopper only, sm_90a) against the CUTLASS
# headers of the nvidia-cutlass wheel (requirements-test.txt), and their launcher like the
# others (with Python's headers: it is also the module's init), symbols included.
cutlass-check:
	@test -x $(PY) || { echo "cutlass-check: needs $(PY) (make venv)"; exit 1; }
	@root=$$($(PY) -c "import cutlass_library, pathlib; print(pathlib.Path(cutlass_library.__file__).parent / 'source')") \
	  || { echo "cutlass-check: nvidia-cutlass is not installed"; exit 1; }; \
	mkdir -p $(BUILD_DIR); \
	printf '%s\n' $(CUTLASS_SOURCES) | xargs -P $(CUTLASS_JOBS) -I{} sh -c 'echo "nvcc -c {} (sm_90a)"; \
	  $(NVCC) -std=c++17 -O2 -DNDEBUG --expt-relaxed-constexpr -Icsrc -I'"$$root"'/include \
	    -I'"$$root"'/tools/util/include -gencode arch=compute_90a,code=sm_90a -c {} \
	    -o $(BUILD_DIR)/$$(basename {} .cu)_sm90a.o' || exit 1; \
	inc=$$($(NVCC) -v --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/.*INCLUDES="\([^"]*\)".*/\1/p' | head -1); \
	tinc=$$($(PY) -c "import torch.utils.cpp_extension as c; print(' '.join('-I' + p for p in c.include_paths()))"); \
	pinc=$$($(PY) -c "import sysconfig; print(sysconfig.get_paths()['include'])"); \
	mkdir -p $(BUILD_DIR)/launch-cutlass; \
	for f in csrc/ops/cuda/cutlass/*.cpp; do echo "g++ -c $$f"; \
	  $(CXX) -std=c++20 -O0 -c -Icsrc -Itest/cuda_launcher_stubs $$tinc $$inc -I$$pinc $$f \
	    -o $(BUILD_DIR)/launch-cutlass/$$(basename $$f .cpp).o || exit 1; \
	done; \
	test/cuda_launcher_stubs/check_symbols.sh cutlass-check "$(BUILD_DIR)/launch-cutlass/*.o" \
	  "$(patsubst csrc/ops/cuda/cutlass/%.cu,$(BUILD_DIR)/%_sm90a.o,$(CUTLASS_SOURCES))"

probe-check:
	@test -x $(PY) || { echo "probe-check: needs $(PY) (make venv)"; exit 1; }
	@root=$$($(PY) -c "import cutlass_library, pathlib; print(pathlib.Path(cutlass_library.__file__).parent / 'source')") \
	  || { echo "probe-check: nvidia-cutlass is not installed"; exit 1; }; \
	mkdir -p $(BUILD_DIR)/probe; \
	printf '%s\n' $(PROBE_SOURCES) | xargs -P $(CUTLASS_JOBS) -I{} sh -c 'echo "nvcc -c {} (sm_90a)"; \
	  $(NVCC) -std=c++17 -O2 -DNDEBUG --expt-relaxed-constexpr -Ibenchmarks/halo_conv_probe -Icsrc -I'"$$root"'/include \
	    -gencode arch=compute_90a,code=sm_90a -c {} -o $(BUILD_DIR)/probe/$$(basename {} .cu).o' || exit 1

pytest:
	$(PY) -m pytest -q test

demo:
	@test -x $(PY) || $(MAKE) venv install
	$(PY) -m segblocks_ros.demo --out demo_output

bench-cpu:
	$(PY) benchmarks/bench_cpu.py

clean:
	rm -rf build $(VENV) *.egg-info segblocks_core/_C*.so demo_output

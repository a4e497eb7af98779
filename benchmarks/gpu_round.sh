#!/usr/bin/env bash
# One round of GPU checks and measurements on the GPU host, in as few device calls as the
# 10-minute limit allows. Run from the repository root with the stages to run:
#
#   bash benchmarks/gpu_round.sh build parity tests probes            # about 5 min
#   bash benchmarks/gpu_round.sh build bench profiles                  # about 7 min
#   bash benchmarks/gpu_round.sh build ab                              # about 7 min
#   bash benchmarks/gpu_round.sh abcutlass                             # about 6 min
#   bash benchmarks/gpu_round.sh build convprobe abpersistent          # about 10 min
#
# Stages (in the order given; each logs to $OUT/round/<stage>.log):
#   build     the extension for sm_90 with the system g++ (README: the image's default CXX
#             wrapper built a crashing extension), and segblocks_core._cutlass where CUTLASS is
#             found (carry build/cutlass: the nvidia-cutlass wheel's cutlass_library/source)
#   parity    benchmarks/gpu_parity.py (CUDA parity of every native op, opcheck, graphs)
#   tests     pytest: the GPU fast path (no host sync, graphs), the CUDA tests of the native ops,
#             fused convolutions and units
#   probes    stem_probe.py and resident_probe.py (candidate optimisations, cuDNN only)
#   bench     bench_gpu.py, the full table (the README's numbers)
#   bench-rn18, bench-rn50  the same for one model each (merge_bench.py joins them)
#   abcutlass bench_gpu.py RN18 subsets: as is (CUTLASS timed where faster, padded outputs
#             auto) and --no-cutlass (AB_PADDED_OFF=1: also --padded-outputs off)
#   convprobe conv_config_probe.py: every CUTLASS configuration against cuDNN per RN18 3x3 shape
#   ncuconv   Nsight Compute (speed of light, memory, warp states, occupancy; CSV in the log) of
#             cuDNN's pick and each CUTLASS configuration on NCU_SHAPES (default: b4 layer1 units,
#             b1 layer4 units) of conv_config_probe.py
#   abframes  bench_gpu.py RN18 subsets (tau 0.5; AB_BATCHES, default 1,4): as is (frames straight into the
#             policy's cells and the stem's tiles) and --no-frames-split (normalised first)
#   abpool    bench_gpu.py RN18 subsets (tau 0.5; AB_BATCHES): as is, --no-pooling-tiles (the max
#             pooling writes packed units, not layer 1's first padded tiles), as is again
#   abpoolprofile  node_profile.py RN18 at 40%, batch 1 and 4, as is and with --no-pooling-tiles, and
#             memory_probe.py with it (what is alive at the 40% peak)
#   abbuild   the A/B of a kernel change: node_profile.py RN18 at 40%, batch 1 and 4, with this build, then
#             with the csrc files under $AB_OLD (a tree like the repository's, e.g. the old version's headers
#             from `git show`, carried under build/) built in their place, then this build restored
#   ringprobe ring_probe.py: the frame passes' time against a copy of their bytes and a one-element kernel
#   gatherprobe  gather_conv_probe.py: the halo-gathering convolution (CUTLASS cp.async mainloop, built by
#             the probe; carry build/cutlass) against the TMA convolution plus its frame pass, per RN18 3x3
#             units shape (GATHER_SHAPES, GATHER_BATCHES: default all, 1,4; GATHER_ARGS=--no-baseline: the
#             gather kernels only, no build stage needed; GATHER_RUNS: runs of configuration subsets, e.g.
#             "64x128_ws2 64x64_pp2,64x128_pp2": one probe run and log each)
#   haloprobe halo_conv_probe.py: the halo-tile convolution (padded tiles loaded once per chunk, taps
#             as shifted ldmatrix rows, wgmma with A in registers; built by the probe; carry
#             build/cutlass) against the TMA convolution, per RN18 stride-1 3x3 units shape
#             (HALO_SHAPES, HALO_BATCHES: default all, 1,4; HALO_ARGS=--no-baseline: no build stage)
#   ncuhalo   Nsight Compute of the halo-tile convolution's first calls (HALO_NCU_SHAPES, default
#             "layer1 conv1"; HALO_NCU_CONFIGS, default s16_u1_n64_rb_te,s16_u1_n64_rb_te_pf; batch 4; no build;
#             stall reasons, tensor pipe, shared-memory bank conflicts)
#   ncuring   Nsight Compute of block_pad_ring_ on ring_probe.py's geometries (batch 1, eager)
#   ncuunits  Nsight Compute of the pooling / upsampling / head kernels (units and dense) of one
#             eager RN18 run at 40% (node_profile.py --profile-once; NCU_BATCH, default 4)
#   abpatch   node_profile.py RN18 at 40%, batch 1 and 4, with upsample2x_units' CUDA kernel forced to
#             each patch of outputs per thread (SEGBLOCKS_UPSAMPLE_UNITS_PATCH: one, pair, quad)
#   halfresstem  halfres_stem_probe.py: the stem's low-res half as the dense stem of the half-resolution
#             image against the low-res tiles (cuDNN only; needs no build)
#   abpersistent  bench_gpu.py RN18 subsets (tau 0.5; AB_BATCHES, default 1,4): as is and
#             --no-persistent-cutlass (CUTLASS's own convolution kernel only)
#   ab        bench_gpu.py RN18 subsets: as is, with --space-to-depth, and with whole blocks in
#             layer3/4 (--units-min-side 16) and in layer4 (--units-min-side 8)
#   profiles  node_profile.py RN18 b1 / b4 and RN50 b1 at 40%, memory_probe.py at 40%
#   aboverlap bench_gpu.py subsets (AB_MODELS, default RN18; tau 0.5; AB_BATCHES): as is, --overlap-skips=2 (both sides'
#             two deepest decoder skip projections on a side stream during layer 4), as is again
#   abpdl     bench_gpu.py subsets (AB_MODELS, default RN18; tau 0.5; AB_BATCHES): as is (kernels launched
#             programmatically, csrc/ops/cuda/pdl.cuh), SEGBLOCKS_PDL=0, as is again
#   abprefetch  the same with SEGBLOCKS_PDL_PREFETCH=0 (the BlockPad passes look their sources up after
#             they wait for the kernel before, not before it as by default) against as is
#   paritynoprefetch  gpu_parity.py (and its pytest -k cuda) with SEGBLOCKS_PDL_PREFETCH=0: BlockPad's
#             lookups after the wait, on every parity case (file prefix no-prefetch-)
#   abhalo  bench_gpu.py subsets (AB_MODELS, default RN18; tau 0.5; AB_BATCHES): as is, --no-halo-conv
#           (conv_into_'s halo-tile kernels left out of both sides' timed choices), as is again
#   testshalo  pytest: conv_into_'s CUDA cases (every configuration, the halo-tile kernels' own) and
#           test_programmatic_launch.py (their dependent chains)
#   abcluster bench_gpu.py subsets (AB_MODELS, default RN18; tau 0.5; AB_BATCHES): as is, --no-cluster-cutlass
#             (the CUTLASS configurations in thread-block clusters left out of the timed choices), as is again
#   clusterprobe  conv_config_probe.py on layer 2 units and layers 3 and 4 (units and dense) and
#             pytest test/test_padded_outputs.py -k "cutlass and _c2" (the clustered configurations' parity)
#   testspdl  pytest test/test_programmatic_launch.py (dependent chains against the ordinary launches)
#   profiles18  node_profile.py RN18 b1 / b4 at 40% only (a kernel change's profiles, to set
#             against an earlier run's: the native kernels have no timed choices)
#   testscutlass  pytest test/test_padded_outputs.py -k cutlass (every CUTLASS configuration's
#             parity and the timed choices; after adding or changing a configuration)
# Everything under $OUT/round is packed into $OUT/round.tgz (the device tool returns a few
# files only) and $OUT/round is then removed: a later command of the same call that writes
# into $OUT/round and packs it again replaces the first archive (its logs are lost), so add
# a stage here instead, or pack elsewhere.
set -u
OUT=${OUT:?set OUT to the folder whose files come back}
R="$OUT/round"
mkdir -p "$R"
PY=${PY:-python3}
status=0

stage() {  # name, command...: run, log, remember a failure (and return it)
  local name=$1; shift
  local t0=$SECONDS rc=0
  "$@" > "$R/$name.log" 2>&1 || rc=$?
  if [ $rc -eq 0 ]; then
    echo "$name: ok ($((SECONDS - t0)) s)"
  else
    echo "$name: FAILED rc=$rc ($((SECONDS - t0)) s)"; tail -20 "$R/$name.log"; status=1
  fi
  return $rc
}

ab_bench() {  # stage name, output folder under round/, extra arguments: bench_gpu.py subsets (AB_MODELS,
              # default RN18; tau 0.5; AB_BATCHES, default 1,4)
  local name=$1 out=$2
  shift 2
  stage "$name" $PY benchmarks/bench_gpu.py --out "$R/$out" --models "${AB_MODELS:-swiftnet_rn18}" --taus 0.5 \
    --batches "${AB_BATCHES:-1,4}" "$@"
}

ab_pair() {  # name, flag: ab_bench as is, then with the flag
  ab_bench "ab_$1" ab
  ab_bench "ab_no-$1" ab "$2"
}

ab_pair_again() {  # name, flag: ab_pair, then as is again (the two as-is runs bound the spread)
  ab_pair "$1" "$2"
  ab_bench "ab_$1_again" ab-again
}

ab_env() {  # name as is, name with, VAR=value: ab_bench as is, with the variable set, as is again
  ab_bench "ab_$1" ab
  export "$3"
  ab_bench "ab_$2" ab
  unset "${3%%=*}"
  ab_bench "ab_$1_again" ab-again
}

build_env() {  # the build's environment: sm_90 with the system g++ (README), CUTLASS where carried
  export CXX=/usr/bin/g++ FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16
  if [ -d build/cutlass/include ]; then export SEGBLOCKS_CUTLASS_DIR=$PWD/build/cutlass; fi
}

for s in "$@"; do
  case $s in
    build)
      build_env
      # a build whose _C does not load (e.g. an undefined symbol) would leave every later stage on
      # the reference ops: stop here instead
      { stage build $PY setup.py -q build_ext --inplace &&
        stage build_load $PY -c "from segblocks_core import ops; assert ops.has_native('cuda'), ops.backend_message(); print(ops.backend_message())"; } ||
        { tar -C "$OUT" -czf "$OUT/round.tgz" round; exit 1; } ;;
    parity)
      stage parity $PY benchmarks/gpu_parity.py --out "$R" ;;
    paritynoprefetch)
      export SEGBLOCKS_PDL_PREFETCH=0
      stage parity_noprefetch $PY benchmarks/gpu_parity.py --out "$R"
      unset SEGBLOCKS_PDL_PREFETCH ;;
    tests)
      # every test of the GPU fast path (no host sync, graphs, units in fp16), the CUDA ones of the rest
      stage tests_fastpath $PY -m pytest -q -p no:cacheprovider test/test_gpu_fastpath.py
      stage tests_cuda $PY -m pytest -q -p no:cacheprovider -k cuda test/test_native_ops.py test/test_fused.py \
        test/test_units.py test/test_halo.py
      stage tests_padded $PY -m pytest -q -p no:cacheprovider test/test_padded_outputs.py ;;
    probes)
      stage stem_probe $PY benchmarks/stem_probe.py
      stage resident_probe $PY benchmarks/resident_probe.py --json "$R/resident-probe.json" ;;
    bench)
      stage bench $PY benchmarks/bench_gpu.py --out "$R" ;;
    bench-rn18|bench-rn50)
      # one model per process (and per device call where build + full bench would pass 10
      # minutes); benchmarks/merge_bench.py joins the two JSONs
      stage "$s" $PY benchmarks/bench_gpu.py --out "$R/$s" --models "swiftnet_${s#bench-}" ;;
    abcutlass)
      stage ab_cutlass $PY benchmarks/bench_gpu.py --out "$R/ab" --models swiftnet_rn18 --taus 0.5
      [ -n "${AB_PADDED_OFF:-}" ] && stage ab_padded_off $PY benchmarks/bench_gpu.py --out "$R/ab" \
        --models swiftnet_rn18 --taus 0.5 --padded-outputs off
      stage ab_no_cutlass $PY benchmarks/bench_gpu.py --out "$R/ab" --models swiftnet_rn18 --taus 0.5 \
        --no-cutlass ;;
    convprobe)
      stage convprobe $PY benchmarks/conv_config_probe.py --json "$R/conv-config-probe.json" ;;
    ncuconv)
      stage ncuconv ncu --clock-control none --profile-from-start off --section SpeedOfLight \
        --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy --section LaunchStats \
        --csv --page details $PY benchmarks/conv_config_probe.py \
        --shapes "${NCU_SHAPES:-b4 layer1 units,b1 layer4 units}" --profile-once ;;
    abframes)
      ab_pair frames --no-frames-split ;;
    abpool)
      # as is, --no-pooling-tiles, as is again (the spread of the two "as is" runs bounds the pair)
      ab_pair_again pooling-tiles --no-pooling-tiles ;;
    abpoolprofile)
      # the same A/B in node profiles (kernel times per plan node, one process each): RN18 at 40%
      for batch in 1 4; do
        for flag in "" --no-pooling-tiles; do
          stage "profile-b$batch${flag:+-no-pooling-tiles}" $PY benchmarks/node_profile.py --batch "$batch" \
            --fraction 0.4 --iters 20 $flag --json "$R/node-profile-rn18-b$batch${flag:+-no-pooling-tiles}.json"
        done
      done
      stage memory-no-pooling-tiles $PY benchmarks/memory_probe.py --fraction 0.4 --no-pooling-tiles \
        --json "$R/memory-probe-no-pooling-tiles.json" ;;
    abbuild)
      : "${AB_OLD:?set AB_OLD to a tree of the old csrc files}"
      so=$(ls segblocks_core/_C*.so) && keep=$(mktemp -d) && cp "$so" "$keep/" || { status=1; continue; }
      for side in new old; do
        if [ $side = old ]; then
          (cd "$AB_OLD" && find csrc -type f) > "$keep/files"
          while read -r f; do mkdir -p "$keep/src/$(dirname "$f")"; cp "$f" "$keep/src/$f"; cp "$AB_OLD/$f" "$f"; done < "$keep/files"
          build_env
          stage build_old $PY setup.py -q build_ext --inplace || break
        fi
        for batch in 1 4; do
          stage "profile-$side-b$batch" $PY benchmarks/node_profile.py --batch "$batch" --fraction 0.4 --iters 20 \
            --json "$R/node-profile-rn18-b$batch-$side.json"
        done
      done
      # this build and its sources back (the old files' newer times make a later build recompile them)
      [ -f "$keep/files" ] && while read -r f; do cp "$keep/src/$f" "$f"; done < "$keep/files"
      cp "$keep/$(basename "$so")" "$so" ;;
    gatherprobe)
      build_env
      # one run, log and JSON per configuration subset of GATHER_RUNS (space-separated; each a
      # comma-separated list, "all" for every configuration): a hung kernel stops only its own
      # run (the probe names it and exits)
      for subset in ${GATHER_RUNS:-all}; do
        [ "$subset" = all ] && subset=""
        tag="gatherprobe${subset:+-${subset//,/-}}"
        stage "$tag" $PY benchmarks/gather_conv_probe.py --cutlass "${SEGBLOCKS_CUTLASS_DIR:-build/cutlass}" \
          --batches "${GATHER_BATCHES:-1,4}" --shapes "${GATHER_SHAPES:-}" --configs "$subset" ${GATHER_ARGS:-} \
          --json "$R/${tag/gatherprobe/gather-conv-probe}.json"
      done ;;
    haloprobe)
      build_env
      stage haloprobe $PY benchmarks/halo_conv_probe.py --cutlass "${SEGBLOCKS_CUTLASS_DIR:-build/cutlass}" \
        --batches "${HALO_BATCHES:-1,4}" --shapes "${HALO_SHAPES:-}" ${HALO_ARGS:-} --json "$R/halo-conv-probe.json" ;;
    ncuhalo)
      build_env
      # one run per configuration (the first call of each: later ones are graph replays)
      for cfg in $(echo "${HALO_NCU_CONFIGS:-s16_u1_n64_rb_te,s16_u1_n64_rb_te_pf}" | tr , ' '); do
        stage "ncuhalo-$cfg" ncu --clock-control none --kernel-name-base mangled --kernel-name regex:halo_conv_kernel \
          --launch-count 1 --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats \
          --section ComputeWorkloadAnalysis --section SchedulerStats --section Occupancy \
          --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum" \
          --csv --page details \
          $PY benchmarks/halo_conv_probe.py --cutlass "${SEGBLOCKS_CUTLASS_DIR:-build/cutlass}" --no-baseline \
          --batches 4 --shapes "${HALO_NCU_SHAPES:-layer1 conv1}" --configs "$cfg"
      done ;;
    ringprobe)
      stage ringprobe $PY benchmarks/ring_probe.py --json "$R/ring-probe.json" ;;
    ncuring)
      stage ncuring ncu --clock-control none --kernel-name-base mangled --kernel-name regex:block_pad_ring_element --section SpeedOfLight \
        --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy --section LaunchStats \
        --section SchedulerStats --csv --page details $PY benchmarks/ring_probe.py --batches 1 --profile-once ;;
    ncuunits)
      stage ncuunits ncu --clock-control none --profile-from-start off --kernel-name-base mangled \
        --kernel-name "regex:${NCU_KERNELS:-Upsample2x|MaxPool|UpsampleArgmax}" --section SpeedOfLight \
        --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy --section LaunchStats \
        --section SchedulerStats --section ComputeWorkloadAnalysis --section InstructionStats --csv --page details \
        $PY benchmarks/node_profile.py --batch "${NCU_BATCH:-4}" --fraction 0.4 --profile-once ;;
    abpatch)
      for patch in one pair quad; do
        for batch in 1 4; do
          stage "profile-$patch-b$batch" env SEGBLOCKS_UPSAMPLE_UNITS_PATCH=$patch $PY benchmarks/node_profile.py \
            --batch "$batch" --fraction 0.4 --iters 20 --json "$R/node-profile-rn18-b$batch-$patch.json"
        done
      done ;;
    halfresstem)
      stage halfresstem $PY benchmarks/halfres_stem_probe.py --json "$R/halfres-stem-probe.json" ;;
    abpersistent)
      ab_pair persistent --no-persistent-cutlass ;;
    ab)
      stage ab_s2d_off $PY benchmarks/bench_gpu.py --out "$R/ab" --models swiftnet_rn18 --taus 0.5
      stage ab_s2d_on $PY benchmarks/bench_gpu.py --out "$R/ab" --models swiftnet_rn18 --taus 0.5 \
        --space-to-depth
      for side in 16 8; do
        stage "ab_units_min_side_$side" $PY benchmarks/bench_gpu.py --out "$R/ab" --models swiftnet_rn18 \
          --taus 0.5 --units-min-side "$side"
      done ;;
    profiles)
      for cfg in "swiftnet_rn18 1" "swiftnet_rn18 4" "swiftnet_rn50 1"; do
        read -r model batch <<< "$cfg"
        stage "profile-$model-b$batch" $PY benchmarks/node_profile.py --model "$model" --batch "$batch" \
          --fraction 0.4 --iters 20 --json "$R/node-profile-$model-b$batch.json"
      done
      stage memory $PY benchmarks/memory_probe.py --fraction 0.4 --json "$R/memory-probe.json" ;;
    aboverlap)
      # as is, with both sides' two deepest decoder skip projections on a side stream, as is again
      ab_pair_again overlap --overlap-skips=2 ;;
    abpdl)
      # as is (programmatic launches), SEGBLOCKS_PDL=0 (every kernel launched the ordinary way), as is again
      ab_env pdl no-pdl SEGBLOCKS_PDL=0 ;;
    abprefetch)
      # as is, SEGBLOCKS_PDL_PREFETCH=0 (BlockPad's lookups after the wait for the kernel before), as is again
      ab_env as-is no-prefetch SEGBLOCKS_PDL_PREFETCH=0 ;;
    abcluster)
      ab_pair_again cluster --no-cluster-cutlass ;;
    abhalo)
      ab_pair_again halo --no-halo-conv ;;
    testshalo)
      stage tests_halo $PY -m pytest -q -p no:cacheprovider test/test_padded_outputs.py \
        test/test_programmatic_launch.py -k "cutlass or halo or chains or programmatic" ;;
    clusterprobe)
      stage tests_cluster $PY -m pytest -q -p no:cacheprovider test/test_padded_outputs.py -k "cutlass and _c2"
      stage cluster_probe $PY benchmarks/conv_config_probe.py --shapes "layer3,layer4,layer2 units" \
        --json "$R/conv-config-probe-clusters.json" ;;
    testspdl)
      stage tests_pdl $PY -m pytest -q -p no:cacheprovider test/test_programmatic_launch.py ;;
    profiles18)
      for batch in 1 4; do
        stage "profile-b$batch" $PY benchmarks/node_profile.py --batch "$batch" --fraction 0.4 --iters 20 \
          --json "$R/node-profile-rn18-b$batch.json"
      done ;;
    testscutlass)
      stage tests_cutlass $PY -m pytest -q -p no:cacheprovider test/test_padded_outputs.py -k cutlass ;;
    *)
      echo "unknown stage $s"; status=1 ;;
  esac
done
tar -C "$OUT" -czf "$OUT/round.tgz" round && rm -rf "$R"
exit $status

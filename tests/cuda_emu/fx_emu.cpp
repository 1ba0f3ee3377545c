// The emulator's scheduler (see include/fx_emu.h): blocks one after another in a shuffled
// order, a block's threads as ucontext fibers that switch only at barriers and shuffles.
#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "fx_emu.h"

dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace fx_emu {
namespace {

constexpr int kMaxThreads = 1024;
constexpr size_t kStackBytes = 256 * 1024;  // kernel arguments (up to 32 KiB) live on it

enum class State { Ready, AtSyncthreads, AtShuffle, Done };

struct Fiber {
  ucontext_t ctx;  // holds pointers into itself: fibers never move
  char* stack = nullptr;
  State state = State::Done;
  unsigned char deposit[8], result[8];
  int size = 0, src = -1;
};

struct Emulator {
  Fiber fibers[kMaxThreads];
  int nthreads = 0;
  ucontext_t scheduler;
  int current = -1;  // the running fiber, or -1 outside kernels
  const std::function<void()>* body = nullptr;
  std::string error;
  unsigned seed = 0;
  uint64_t launches = 0, blocks = 0;
  std::vector<int> sms{4};  // SM count of each emulated device
  bool capturing = false;   // what cudaStreamIsCapturing reports
  int device = 0;
};
Emulator& emu() {
  static Emulator* e = new Emulator;  // never destroyed: fibers may hold it at exit
  return *e;
}

void trampoline() {
  Emulator& e = emu();
  (*e.body)();
  e.fibers[e.current].state = State::Done;
}  // returns to uc_link: the scheduler

void yield_to_scheduler() {
  Emulator& e = emu();
  swapcontext(&e.fibers[e.current].ctx, &e.scheduler);
}

void resume(int i) {
  Emulator& e = emu();
  e.current = i;
  threadIdx = dim3(i % blockDim.x, (i / blockDim.x) % blockDim.y, i / (blockDim.x * blockDim.y));
  swapcontext(&e.scheduler, &e.fibers[i].ctx);
  e.current = -1;
}

// Opens the warps whose live lanes all wait at a shuffle; false if none could open.
bool open_shuffles() {
  Emulator& e = emu();
  bool opened = false;
  for (int base = 0; base < e.nthreads; base += 32) {
    const int end = std::min(base + 32, e.nthreads);
    int live = 0, waiting = 0;
    for (int i = base; i < end; ++i) {
      live += e.fibers[i].state != State::Done;
      waiting += e.fibers[i].state == State::AtShuffle;
    }
    if (waiting == 0 || waiting != live) continue;
    if (live != 32) {
      fail("a full-mask shuffle in a warp whose lanes have not all reached it (returned, or "
           "a partial warp)");
      return false;
    }
    for (int i = base; i < end; ++i) {
      Fiber& f = e.fibers[i];
      const Fiber& from = f.src < 0 ? f : e.fibers[base + f.src];
      if (from.size != f.size) {
        fail("lanes of one shuffle exchange values of different sizes");
        return false;
      }
      std::memcpy(f.result, from.deposit, size_t(f.size));
    }
    for (int i = base; i < end; ++i) e.fibers[i].state = State::Ready;
    opened = true;
  }
  return opened;
}

// Runs the current block's threads to completion; false on an error.
bool run_block() {
  Emulator& e = emu();
  for (int i = 0; i < e.nthreads; ++i) {
    Fiber& f = e.fibers[i];
    f.state = State::Ready;
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack;
    f.ctx.uc_stack.ss_size = kStackBytes;
    f.ctx.uc_link = &e.scheduler;
    makecontext(&f.ctx, trampoline, 0);
  }
  for (bool backwards = false;; backwards = !backwards) {
    // Alternate directions: a thread that reads what another writes without a barrier
    // between them reads it too early in one of the two orders.
    for (int k = 0; k < e.nthreads; ++k) {
      const int i = backwards ? e.nthreads - 1 - k : k;
      if (e.fibers[i].state != State::Ready) continue;
      resume(i);
      if (!e.error.empty()) return false;
    }
    int live = 0, at_barrier = 0;
    for (int i = 0; i < e.nthreads; ++i) {
      live += e.fibers[i].state != State::Done;
      at_barrier += e.fibers[i].state == State::AtSyncthreads;
    }
    if (live == 0) return true;
    if (open_shuffles()) continue;
    if (!e.error.empty()) return false;
    if (at_barrier != live) {
      fail("threads wait at different barriers: a __syncthreads or shuffle not every thread "
           "reaches (real hardware hangs or misbehaves)");
      return false;
    }
    if (live != e.nthreads) {
      fail("__syncthreads after some threads of the block returned");
      return false;
    }
    for (int i = 0; i < e.nthreads; ++i) e.fibers[i].state = State::Ready;
  }
}

}  // namespace

void fail(const char* what) {
  Emulator& e = emu();
  if (e.error.empty()) e.error = what;
  if (e.current >= 0) {  // inside a kernel: this thread stops here for good
    e.fibers[e.current].state = State::Done;
    yield_to_scheduler();
  }
}

int lane_id() { return emu().current % 32; }

void syncthreads() {
  Emulator& e = emu();
  e.fibers[e.current].state = State::AtSyncthreads;
  yield_to_scheduler();
}

void warp_exchange(const void* value, void* out, int size, int src) {
  Emulator& e = emu();
  Fiber& f = e.fibers[e.current];
  std::memcpy(f.deposit, value, size_t(size));
  f.size = size;
  f.src = src;
  f.state = State::AtShuffle;
  yield_to_scheduler();
  std::memcpy(out, f.result, size_t(size));
}

void launch_impl(dim3 grid, dim3 block, size_t arg_bytes, const std::function<void()>& body) {
  Emulator& e = emu();
  if (!e.error.empty()) return;  // the first error stands; later launches do not run
  if (e.current >= 0) return fail("a kernel launched a kernel");
  ++e.launches;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0)
    return fail("a launch of zero blocks (CUDA: invalid configuration argument)");
  if (grid.y > 65535 || grid.z > 65535) return fail("gridDim.y or gridDim.z over 65,535");
  const uint64_t nthreads = uint64_t(block.x) * block.y * block.z;
  if (nthreads == 0 || nthreads > kMaxThreads) return fail("a block of 0 or over 1,024 threads");
  if (arg_bytes > kMaxArgBytes) return fail("kernel arguments over 32,764 bytes");
  for (uint64_t i = 0; i < nthreads; ++i) {
    Fiber& f = e.fibers[i];
    if (f.stack) continue;
    void* p = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return fail("out of memory for fiber stacks");
    f.stack = static_cast<char*>(p);
  }
  e.nthreads = int(nthreads);
  e.body = &body;
  blockDim = block;
  gridDim = grid;
  const uint64_t nblocks = uint64_t(grid.x) * grid.y * grid.z;
  std::vector<uint64_t> order(nblocks);
  std::iota(order.begin(), order.end(), uint64_t(0));
  std::shuffle(order.begin(), order.end(), std::mt19937_64(e.seed * 1000003ull + e.launches));
  for (const uint64_t b : order) {
    blockIdx = dim3(unsigned(b % grid.x), unsigned(b / grid.x % grid.y),
                    unsigned(b / (uint64_t(grid.x) * grid.y)));
    ++e.blocks;
    if (!run_block()) break;
  }
  e.body = nullptr;
}

}  // namespace fx_emu

cudaError_t cudaGetDevice(int* dev) {
  *dev = fx_emu::emu().device;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr, int dev) {
  *value = fx_emu::emu().sms.at(size_t(dev));
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t, cudaStreamCaptureStatus* status) {
  *status = fx_emu::emu().capturing ? cudaStreamCaptureStatusActive : cudaStreamCaptureStatusNone;
  return cudaSuccess;
}

// The tests' controls (tests/cuda_emu_lib.py).
extern "C" {
void fx_emu_set_capturing(int on) { fx_emu::emu().capturing = on != 0; }
const char* fx_emu_error() { return fx_emu::emu().error.c_str(); }
void fx_emu_clear_error() { fx_emu::emu().error.clear(); }
void fx_emu_set_seed(unsigned seed) { fx_emu::emu().seed = seed; }
uint64_t fx_emu_launches() { return fx_emu::emu().launches; }
uint64_t fx_emu_blocks() { return fx_emu::emu().blocks; }
// Switches to an emulated device with `sms` SMs (a device per count: the launchers cache
// the count per device).
void fx_emu_use_sms(int sms) {
  auto& e = fx_emu::emu();
  auto it = std::find(e.sms.begin(), e.sms.end(), sms);
  if (it == e.sms.end()) it = e.sms.insert(e.sms.end(), sms);
  e.device = int(it - e.sms.begin());
}
}

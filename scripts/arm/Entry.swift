// @_cdecl entry points into ICHKernels for the qemu-aarch64 / native-x86 bit-for-bit check
// (scripts/check-arm-kernels.sh) and the ARM speed estimate (bench/arm/). Compiled together with
// Sources/ICHKernels/*.swift as one module (-wmo), so internal API is visible. Inputs come from the C driver (the
// same generator on both architectures); outputs are int32 accumulators. When the kernels' internal API changes,
// this file changes with it. (Started from ../shared/tools/arm, now the project's own.)

/// kind: 0 reference, 1 dot (ARM default; int16 products where this build prefers them and the weights allow),
/// 2 pairs (x86 default), 3 Winograd F(2x2,3x3) on the smlal-shaped GEMM (arm64's, with its 4 x 4-tile blocks),
/// 4 dot with int32 products (sdot / smull + saddw), 5 dot with int16 products, 6 Winograd on the vpmaddwd-shaped
/// GEMM (x86's). Returns 0 on success, -1 if the kind does not apply (shape, or a -128 weight for kind 5).
@_cdecl("ichk_conv")
public func ichk_conv(_ kind: Int32, _ inC: Int, _ h: Int, _ w: Int, _ outC: Int, _ k: Int, _ stride: Int, _ pad: Int,
                      _ input: UnsafePointer<UInt8>, _ inZero: Int32, _ weights: UnsafePointer<Int8>,
                      _ bias: UnsafePointer<Int32>, _ acc: UnsafeMutablePointer<Int32>) -> Int32 {
    let s = ReferenceKernels.ConvShape(inChannels: inC, inHeight: h, inWidth: w, outChannels: outC, kernel: k, stride: stride, padding: pad)
    switch kind {
    case 0:
        ReferenceKernels.convAccumulate(s, input: input, inZero: inZero, weights: weights, bias: bias, acc: acc)
        return 0
    case 1, 2, 4, 5:
        let wts = Array(UnsafeBufferPointer(start: weights, count: outC * inC * k * k))
        if kind == 5 && wts.contains(Int8.min) { return -1 }
        let packed = PackedConvWeights(weights: wts, outChannels: outC, inChannels: inC, kernel: k, kind: kind == 2 ? .pairs : .dot,
                                       int16Products: kind == 4 ? false : kind == 5 ? true : nil)
        let bytes = packed.scratchBytes(s)
        let scratch = UnsafeMutablePointer<UInt8>.allocate(capacity: bytes)
        defer { scratch.deallocate() }
        ConvGEMM.convAccumulate(s, input: input, inZero: inZero, weights: packed, bias: bias, acc: acc, scratch: scratch)
        return 0
    case 3, 6:
        guard WinogradWeights.applies(s, lanes: kind == 3) else { return -1 }
        let wts = Array(UnsafeBufferPointer(start: weights, count: outC * inC * k * k))
        let ww = WinogradWeights(weights: wts, outChannels: outC, inChannels: inC, lanes: kind == 3)
        let bytes = ww.scratchBytes(s)
        let scratch = UnsafeMutablePointer<UInt8>.allocate(capacity: bytes)
        defer { scratch.deallocate() }
        let plane = s.outHeight * s.outWidth
        ConvWinograd.convAccumulate(s, input: input, inZero: inZero, weights: ww, bias: bias, scratch: scratch) { pixels, band in
            for o in 0..<outC {
                for (i, p) in pixels.enumerated() { acc[o * plane + p] = band[o * pixels.count + i] }
            }
        }
        return 0
    default:
        return -1
    }
}

/// The dot kernel's register tile alone (ConvDot.tile): 2 channels (weights `weights`, `weights + depth`) x 3
/// im2col rows (`rows`, each `depth` bytes, depth a multiple of 32) into out[lane x 3 + pixel].
/// int16: the int16-products variant (weights must not be -128).
@_cdecl("ichk_tile")
public func ichk_tile(_ depth: Int, _ weights: UnsafePointer<Int8>, _ rows: UnsafePointer<Int8>, _ int16: Bool,
                      _ out: UnsafeMutablePointer<Int32>) {
    ConvDot.tile(depth: depth, weights: weights, rows: rows, int16: int16, out: out)
}

/// Requantisation (ReferenceKernels.requantizePlanes, the SIMD8<Float> path plus the scalar tail).
/// mode 0: bytes; 1: bytes + byte residual; 2: bytes + int16 (shortcut path) outputs, int16 residual.
@_cdecl("ichk_requant")
public func ichk_requant(_ mode: Int32, _ acc: UnsafePointer<Int32>, _ channels: Int, _ plane: Int, _ scales: UnsafePointer<Float>,
                         _ wideScales: UnsafePointer<Float>, _ zero: Int32, _ relu: Bool,
                         _ residualBytes: UnsafePointer<UInt8>, _ residualZero: Int32, _ residualWide: UnsafePointer<Int16>,
                         _ residualScale: Float, _ out: UnsafeMutablePointer<UInt8>, _ outWide: UnsafeMutablePointer<Int16>) {
    let bytes = ReferenceKernels.ByteTarget(data: out, scales: scales, clamp: OutputClamp(zero: zero, relu: relu),
                                            residualScale: mode == 0 ? 0 : residualScale)
    switch mode {
    case 0:
        ReferenceKernels.requantizePlanes(acc: acc, channels: channels, plane: plane, bytes: bytes)
    case 1:
        ReferenceKernels.requantizePlanes(acc: acc, channels: channels, plane: plane,
                                          residual: .bytes(residualBytes, zero: residualZero), bytes: bytes)
    default:
        let wide = ReferenceKernels.WideTarget(data: outWide, scales: wideScales, clamp: .wide(relu: relu), residualScale: residualScale * 0.5)
        ReferenceKernels.requantizePlanes(acc: acc, channels: channels, plane: plane, residual: .wide(residualWide),
                                          bytes: bytes, wide: wide)
    }
}

/// 3x3 stride-2 max pool on bytes (PoolKernels).
@_cdecl("ichk_maxpool")
public func ichk_maxpool(_ input: UnsafePointer<UInt8>, _ channels: Int, _ h: Int, _ w: Int, _ out: UnsafeMutablePointer<UInt8>) {
    PoolKernels.maxPool3x3s2(input: input, channels: channels, height: h, width: w, output: out)
}

/// Profiling hook: an empty C function whose executions qemu's exec trace shows (tbcount.c splits the trace there).
@_silgen_name("ichk_mark")
func ichk_mark(_ phase: Int32)

/// One convolution the way the engine runs it on ARM (dot kernel, or Winograd where the engine takes it), for an
/// instruction profile under qemu: weights packed first (model load, not counted), ichk_mark(1),
/// ConvGEMM.convAccumulate, ichk_mark(2), requantisation of the whole plane to bytes with a byte residual (the
/// block-output case), ichk_mark(3). Winograd instead: ichk_mark(1), ConvWinograd.convAccumulate with each band
/// requantised as it is handed over (as the engine does; profile.py counts the band requantisation, inside the
/// convolution's phase, as requantisation), ichk_mark(2), ichk_mark(3).
/// `winograd`: -1 as the engine chooses on this build (`ConvWinograd.preferred(with: .dot)`, the shape, and
/// Int8ResNet18.winogradLimitLanes' 2^22 weights), 0 never, 1 wherever the shape allows.
/// Unoptimised on purpose: it then calls the kernels' out-of-line entry points exactly as ICHEngine (another
/// module) does, instead of inlining and specialising them for this call.
@_cdecl("ichk_profile_conv")
@_optimize(none)
public func ichk_profile_conv(_ inC: Int, _ h: Int, _ w: Int, _ outC: Int, _ k: Int, _ stride: Int, _ pad: Int,
                              _ input: UnsafePointer<UInt8>, _ inZero: Int32, _ weights: UnsafePointer<Int8>,
                              _ bias: UnsafePointer<Int32>, _ acc: UnsafeMutablePointer<Int32>, _ scales: UnsafePointer<Float>,
                              _ residual: UnsafePointer<UInt8>, _ out: UnsafeMutablePointer<UInt8>, _ winograd: Int32) {
    let s = ReferenceKernels.ConvShape(inChannels: inC, inHeight: h, inWidth: w, outChannels: outC, kernel: k, stride: stride, padding: pad)
    let engineTakes = ConvWinograd.preferred(with: .dot) && outC * inC * k * k <= 1 << 22
    if WinogradWeights.applies(s, lanes: ConvWinograd.prefersLanes) && (winograd == 1 || (winograd == -1 && engineTakes)) {
        let ww = profileWinogradPack(weights, outC, inC)
        let scratch = profileWinogradScratch(ww, s)
        let plane = s.outHeight * s.outWidth
        ichk_mark(1)
        ConvWinograd.convAccumulate(s, input: input, inZero: inZero, weights: ww, bias: bias, scratch: scratch, parallel: profileParallel,
                                    finish: { pixels, band in profileRequantizeBand(band, outC, plane, pixels, scales, residual, out) })
        ichk_mark(2)
        ichk_mark(3)
        return
    }
    let packed = profilePack(weights, outC, inC, k)
    let scratch = profileScratch(packed, s)
    ichk_mark(1)
    ConvGEMM.convAccumulate(s, rows: nil, input: input, inZero: inZero, weights: packed, bias: bias, acc: acc, scratch: scratch,
                            parallel: profileParallel, finish: profileFinish)
    ichk_mark(2)
    profileRequantize(acc, outC, s.outHeight * s.outWidth, scales, residual, out)
    ichk_mark(3)
}

/// What the engine passes: a pool's split closure, opaque to the kernels (here one part, run inline).
let profileParallel = Parallel(count: 1) { n, body in body(0, 0..<n) }
func profileFinish(_ pixels: Range<Int>) {}

@inline(never)
func profilePack(_ weights: UnsafePointer<Int8>, _ outC: Int, _ inC: Int, _ k: Int) -> PackedConvWeights {
    let wts = Array(UnsafeBufferPointer(start: weights, count: outC * inC * k * k))
    return PackedConvWeights(weights: wts, outChannels: outC, inChannels: inC, kernel: k, kind: .dot)
}

@inline(never)
func profileWinogradPack(_ weights: UnsafePointer<Int8>, _ outC: Int, _ inC: Int) -> WinogradWeights {
    WinogradWeights(weights: Array(UnsafeBufferPointer(start: weights, count: outC * inC * 9)), outChannels: outC, inChannels: inC)
}

@inline(never)
func profileWinogradScratch(_ w: WinogradWeights, _ s: ReferenceKernels.ConvShape) -> UnsafeMutablePointer<UInt8> {
    UnsafeMutablePointer<UInt8>.allocate(capacity: w.scratchBytes(s))
}

/// A Winograd band's requantisation as the engine's `finish` does it (accumulators of the band only).
@inline(never)
func profileRequantizeBand(_ acc: UnsafePointer<Int32>, _ outC: Int, _ plane: Int, _ pixels: Range<Int>, _ scales: UnsafePointer<Float>,
                           _ residual: UnsafePointer<UInt8>, _ out: UnsafeMutablePointer<UInt8>) {
    let bytes = ReferenceKernels.ByteTarget(data: out, scales: scales, clamp: OutputClamp(zero: 0, relu: true), residualScale: 0.5)
    ReferenceKernels.requantizePlanes(acc: acc, channels: outC, plane: plane, residual: .bytes(residual, zero: 3), bytes: bytes,
                                      pixels: pixels, accBand: (pixels.lowerBound, pixels.count))
}

@inline(never)
func profileScratch(_ packed: PackedConvWeights, _ s: ReferenceKernels.ConvShape) -> UnsafeMutablePointer<UInt8> {
    UnsafeMutablePointer<UInt8>.allocate(capacity: packed.scratchBytes(s))
}

@inline(never)
func profileRequantize(_ acc: UnsafePointer<Int32>, _ outC: Int, _ plane: Int, _ scales: UnsafePointer<Float>,
                       _ residual: UnsafePointer<UInt8>, _ out: UnsafeMutablePointer<UInt8>) {
    let bytes = ReferenceKernels.ByteTarget(data: out, scales: scales, clamp: OutputClamp(zero: 0, relu: true), residualScale: 0.5)
    ReferenceKernels.requantizePlanes(acc: acc, channels: outC, plane: plane, residual: .bytes(residual, zero: 3), bytes: bytes)
}

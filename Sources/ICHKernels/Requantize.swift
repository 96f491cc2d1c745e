// Integer kernels of the int8 engine. Standard library only: no Foundation, no Glibc, so that
// ../shared/tools/a64/compile.sh can compile this module for aarch64 on an x86 machine.
//
// Arithmetic contract (every kernel, plain or SIMD, must give identical bytes):
//   accumulator  acc = bias + sum of (x - xZero) * w        exact, Int32, no saturation
//   real value   v   = Float(acc) * scale[o]                one fp32 multiply (Float(acc) rounds to nearest even)
//                    (+ Float(r - rZero) * residualScale)    one fp32 multiply, one fp32 add, in that order
//   output       q   = clamp(roundToNearestEven(v), lo - yZero, hi - yZero) + yZero
// where scale[o] = inputScale * weightScale[o] / outputScale, and lo = yZero with ReLU, 0 without.
//
// The int16 shortcut path (models whose block outputs, downsample outputs and pooled features are also kept
// as int16, see `WideTarget`): symmetric, no zero point, and the same arithmetic with its own scales:
//   real value   v   = Float(acc) * wideScale[o] (+ Float(r - rZero) * wideResidualScale)
//   output       q16 = clamp(roundToNearestEven(v), relu ? 0 : -32767, 32767)
// A residual is either bytes (r - rZero) or int16 (rZero = 0).
//
// Fine convolution inputs (12-bit activations, see FineActivations.swift): the convolution runs twice on byte
// planes, and acc = 16 x accHigh + accLow, exact in Int64 (either pass alone is a byte convolution's Int32);
// Float(acc) then rounds to nearest even as above. Outputs of 12 bits clamp to 0...4095 the same way as bytes
// to 0...255.

/// A real value v, already in output units (v = Float(acc) x scale [+ Float(r - rZero) x residualScale], for
/// any accumulator width: Float(acc) rounds to nearest even for Int64 as for Int32), to an output: a byte, or
/// an int16 of the shortcut path (zero 0, bounds `OutputClamp.wide`). Every requantisation ends here.
@inline(__always)
public func requantize<Output: FixedWidthInteger>(real v: Float, zero: Int32, lower: Float, upper: Float) -> Output {
    Output(truncatingIfNeeded: Int32(min(max(v, lower), upper).rounded(.toNearestOrEven)) &+ zero)
}

/// Turns one accumulator into an output byte.
@inline(__always)
public func requantize(_ acc: Int32, scale: Float, zero: Int32, lower: Float, upper: Float) -> UInt8 {
    requantize(real: Float(acc) * scale, zero: zero, lower: lower, upper: upper)
}

/// The same with a residual added in the real domain (ResNet's shortcut): `residual` is r - rZero, from a byte
/// or (rZero = 0) an int16 value.
@inline(__always)
public func requantize(_ acc: Int32, scale: Float, residual: Int32, residualScale: Float,
                       zero: Int32, lower: Float, upper: Float) -> UInt8 {
    requantize(real: Float(acc) * scale + Float(residual) * residualScale, zero: zero, lower: lower, upper: upper)
}

/// A real value v (already in output units) to an int16 of the shortcut path.
@inline(__always)
public func requantizeWide(_ v: Float, relu: Bool) -> Int16 {
    let clamp = OutputClamp.wide(relu: relu)
    return requantize(real: v, zero: clamp.zero, lower: clamp.lower, upper: clamp.upper)
}

/// Bounds of the int16 shortcut path: symmetric, so -32768 is never produced.
public enum WideLimit {
    public static let max: Int32 = 32767
    /// Average pooling sums a plane of int16 values in an Int32: exact for planes of at most 65536 values.
    public static let maxPooledPlane = 1 << 16
}

/// Output range of a requantisation, as bounds on v (before the zero point is added).
public struct OutputClamp: Sendable, Equatable {
    public var zero: Int32
    public var lower: Float
    public var upper: Float

    /// A byte output with zero point `zero` (or, `maximum` 4095, a 12-bit one).
    public init(zero: Int32, relu: Bool, maximum: Int32 = 255) {
        self.init(zero: zero, lower: relu ? 0 : Float(-zero), upper: Float(maximum - zero))
    }

    init(zero: Int32, lower: Float, upper: Float) {
        self.zero = zero
        self.lower = lower
        self.upper = upper
    }

    /// An int16 output of the shortcut path: symmetric, no zero point.
    public static func wide(relu: Bool) -> OutputClamp {
        OutputClamp(zero: 0, lower: relu ? 0 : -Float(WideLimit.max), upper: Float(WideLimit.max))
    }
}

// MARK: Specialised pieces of `ReferenceKernels.requantizePlanes`

/// Where a requantisation's residual comes from, as a type so that each kind gets its own loop.
protocol ResidualLoad {
    /// False for `NoResidual`: v is then acc x scale alone, as the contract says (no "+ 0 x scale").
    static var present: Bool { get }
    /// r - rZero at element `i`.
    func value(at i: Int) -> Int32
    /// Eight of them, as Float.
    func values8(at i: Int) -> SIMD8<Float>
}

struct NoResidual: ResidualLoad {
    static var present: Bool { false }
    @inline(__always) func value(at i: Int) -> Int32 { 0 }
    @inline(__always) func values8(at i: Int) -> SIMD8<Float> { SIMD8() }
}

/// Bytes, or 12-bit activations in UInt16, with their zero point.
struct NarrowResidual<Element: FixedWidthInteger & UnsignedInteger & SIMDScalar>: ResidualLoad {
    let data: UnsafePointer<Element>
    let zero: Int32
    static var present: Bool { true }
    @inline(__always) func value(at i: Int) -> Int32 { Int32(data[i]) &- zero }
    @inline(__always) func values8(at i: Int) -> SIMD8<Float> {
        SIMD8<Float>(SIMD8<Int32>(truncatingIfNeeded: UnsafeRawPointer(data + i).loadUnaligned(as: SIMD8<Element>.self)) &- zero)
    }
}

/// Where a requantisation's accumulators come from: one Int32 plane (`Accumulators`), or the two passes of a
/// convolution over a 12-bit input (`SplitAccumulators`). Both hand over Float(acc) of the exact accumulator.
protocol AccumulatorLoad {
    /// The same accumulators seen from channel `o` (the loop's per-channel offset, taken once per channel).
    func channel(_ o: Int) -> Self
    /// Float(acc) at (absolute) pixel `j` of the channel.
    func value(at j: Int) -> Float
    func values8(at j: Int) -> SIMD8<Float>
}

/// Accumulators of pixels `first`... with `count` per channel: pixel j of channel o at acc[o x count + j - first].
struct Accumulators: AccumulatorLoad {
    /// Pixel 0 of the current channel (may point before the buffer: only pixels first... are read).
    let origin: UnsafePointer<Int32>
    let count: Int

    init(acc: UnsafePointer<Int32>, first: Int, count: Int) {
        origin = acc - first
        self.count = count
    }

    private init(origin: UnsafePointer<Int32>, count: Int) {
        self.origin = origin
        self.count = count
    }

    @inline(__always) func channel(_ o: Int) -> Accumulators { Accumulators(origin: origin + o * count, count: count) }
    @inline(__always) func value(at j: Int) -> Float { Float(origin[j]) }
    @inline(__always) func values8(at j: Int) -> SIMD8<Float> {
        SIMD8<Float>(UnsafeRawPointer(origin + j).loadUnaligned(as: SIMD8<Int32>.self))
    }
}

/// acc = 2^FineActivations.lowBits x high + low, in Int64 (the sum can pass Int32 for deep layers).
struct SplitAccumulators: AccumulatorLoad {
    let high: Accumulators, low: Accumulators
    @inline(__always) func channel(_ o: Int) -> SplitAccumulators { SplitAccumulators(high: high.channel(o), low: low.channel(o)) }
    @inline(__always) func exact(at j: Int) -> Int64 {
        Int64(high.origin[j]) &<< Int64(FineActivations.lowBits) &+ Int64(low.origin[j])
    }
    @inline(__always) func value(at j: Int) -> Float { Float(exact(at: j)) }
    @inline(__always) func values8(at j: Int) -> SIMD8<Float> {
        var v = SIMD8<Float>()
        for k in 0..<8 { v[k] = Float(exact(at: j &+ k)) }
        return v
    }
}

struct WideResidual: ResidualLoad {
    let data: UnsafePointer<Int16>
    static var present: Bool { true }
    @inline(__always) func value(at i: Int) -> Int32 { Int32(data[i]) }
    @inline(__always) func values8(at i: Int) -> SIMD8<Float> {
        SIMD8<Float>(SIMD8<Int32>(truncatingIfNeeded: UnsafeRawPointer(data + i).loadUnaligned(as: SIMD8<Int16>.self)))
    }
}

/// Where a requantisation writes: bytes, int16 of the shortcut path, or both.
protocol RequantizeOutputs {
    /// One output from Float(acc) of channel `o` and residual r (0 without one), per the contract.
    func store<R: ResidualLoad>(_ acc: Float, residual: Int32, channel o: Int, at i: Int, _: R.Type)
    /// Eight at once, bit for bit `store`: the same fp32 multiply (and multiply and add for the residual, in the
    /// same order; Swift does not contract them into FMAs), the same clamp to integral bounds, and
    /// round-to-nearest-even by adding 1.5 x 2^23 (exact for |v| < 2^22: the sum's ulp is 1, and IEEE addition
    /// rounds to nearest even), which avoids the trapping Float -> Int32 conversion that kept the scalar loop
    /// from vectorising.
    func store8<R: ResidualLoad>(_ acc: SIMD8<Float>, residual: SIMD8<Float>, channel o: Int, at i: Int, _: R.Type)
}

/// Clamps to [lower, upper] and rounds half to even, eight lanes (values must stay below 2^22 after the clamp).
@inline(__always)
func roundedClamped(_ v: SIMD8<Float>, lower: Float, upper: Float) -> SIMD8<Int32> {
    let magic: Float = 12_582_912  // 1.5 x 2^23
    var q = SIMD8<Int32>()
    for k in 0..<8 {
        let clamped = min(max(v[k], lower), upper) + magic
        q[k] = Int32(bitPattern: clamped.bitPattern) &- Int32(bitPattern: magic.bitPattern)
    }
    return q
}

extension ReferenceKernels.RequantizeTarget: RequantizeOutputs {
    @inline(__always)
    func store<R: ResidualLoad>(_ acc: Float, residual: Int32, channel o: Int, at i: Int, _: R.Type) {
        var v = acc * scales[o]
        if R.present { v = v + Float(residual) * residualScale }
        data[i] = requantize(real: v, zero: clamp.zero, lower: clamp.lower, upper: clamp.upper)
    }

    @inline(__always)
    func store8<R: ResidualLoad>(_ acc: SIMD8<Float>, residual: SIMD8<Float>, channel o: Int, at i: Int, _: R.Type) {
        var v = acc * scales[o]
        if R.present { v = v + residual * residualScale }
        let q = roundedClamped(v, lower: clamp.lower, upper: clamp.upper) &+ clamp.zero
        UnsafeMutableRawPointer(data + i).storeBytes(of: SIMD8<Output>(truncatingIfNeeded: q), as: SIMD8<Output>.self)
    }
}

/// A block output of a model with the int16 shortcut path: bytes (or 12-bit values) for the convolutions,
/// int16 for the shortcut.
struct BothTargets<Narrow: RequantizeOutputs>: RequantizeOutputs {
    let narrow: Narrow
    let wide: ReferenceKernels.WideTarget

    @inline(__always)
    func store<R: ResidualLoad>(_ acc: Float, residual: Int32, channel o: Int, at i: Int, _: R.Type) {
        narrow.store(acc, residual: residual, channel: o, at: i, R.self)
        wide.store(acc, residual: residual, channel: o, at: i, R.self)
    }

    @inline(__always)
    func store8<R: ResidualLoad>(_ acc: SIMD8<Float>, residual: SIMD8<Float>, channel o: Int, at i: Int, _: R.Type) {
        narrow.store8(acc, residual: residual, channel: o, at: i, R.self)
        wide.store8(acc, residual: residual, channel: o, at: i, R.self)
    }
}

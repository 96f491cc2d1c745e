// Integer kernels of the int8 engine. Standard library only: no Foundation, no Glibc, so that
// ../shared/tools/a64/compile.sh can compile this module for aarch64 on an x86 machine.
//
// Arithmetic contract (every kernel, plain or SIMD, must give identical bytes):
//   accumulator  acc = bias + sum of (x - xZero) * w        exact, Int32, no saturation
//   real value   v   = Float(acc) * scale[o]                one fp32 multiply (Float(acc) rounds to nearest even)
//                    (+ Float(r - rZero) * residualScale)    one fp32 multiply, one fp32 add, in that order
//   output       q   = clamp(roundToNearestEven(v), lo - yZero, hi - yZero) + yZero
// where scale[o] = inputScale * weightScale[o] / outputScale, and lo = yZero with ReLU, 0 without.

/// Turns one accumulator into an output byte.
@inline(__always)
public func requantize(_ acc: Int32, scale: Float, zero: Int32, lower: Float, upper: Float) -> UInt8 {
    let v = Float(acc) * scale
    return UInt8(truncatingIfNeeded: Int32(min(max(v, lower), upper).rounded(.toNearestOrEven)) &+ zero)
}

/// The same with a residual byte added in the real domain (ResNet's shortcut).
@inline(__always)
public func requantize(_ acc: Int32, scale: Float, residual: UInt8, residualZero: Int32, residualScale: Float,
                       zero: Int32, lower: Float, upper: Float) -> UInt8 {
    let v = Float(acc) * scale + Float(Int32(residual) &- residualZero) * residualScale
    return UInt8(truncatingIfNeeded: Int32(min(max(v, lower), upper).rounded(.toNearestOrEven)) &+ zero)
}

/// Output range of a requantisation, as bounds on v (before the zero point is added).
public struct OutputClamp: Sendable, Equatable {
    public var zero: Int32
    public var lower: Float
    public var upper: Float

    public init(zero: Int32, relu: Bool) {
        self.zero = zero
        lower = relu ? 0 : Float(-zero)
        upper = Float(255 - zero)
    }
}

/// Fine convolution inputs: 12-bit activations (levels 0...4095, stored in UInt16) for models whose byte
/// activations cost too much accuracy (format version 3; docs/converting.md, "12-bit activations").
///
/// No kernel of its own: a 12-bit value x splits into a high byte h = x >> 4 and a low part l = x & 15, with the
/// zero point split the same way (zh, zl), so that
///     x - z = 16 (h - zh) + (l - zl)
/// and a convolution over x is 16 x (the byte convolution over h) + (the byte convolution over l): every byte
/// kernel (GEMM, Winograd, the ARM dot-product one) runs both passes unchanged, each pass's accumulator stays
/// within a byte convolution's Int32 bounds, and padding taps (which read the zero point) still contribute
/// nothing. The sum is formed in Int64 (`SplitAccumulators`): 16 x 4608 x 255 x 127 can pass Int32. The bias
/// goes into the low pass only. Twice the convolution work of bytes, in exchange for a 16 times finer step.
public enum FineActivations {
    /// Bits of the low part.
    public static let lowBits = 4

    /// The zero point's high and low parts (what padding taps of each pass read).
    @inline(__always)
    public static func zeroPoints(_ zero: Int32) -> (high: Int32, low: Int32) {
        (zero >> Int32(lowBits), zero & ((1 << Int32(lowBits)) - 1))
    }

    /// Splits `count` 12-bit values into their high bytes and low parts.
    public static func split(_ input: UnsafePointer<UInt16>, count: Int, high: UnsafeMutablePointer<UInt8>,
                             low: UnsafeMutablePointer<UInt8>) {
        var i = 0
        while i + 16 <= count {
            let v = UnsafeRawPointer(input + i).loadUnaligned(as: SIMD16<UInt16>.self)
            UnsafeMutableRawPointer(high + i).storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: v &>> UInt16(lowBits)),
                                                         as: SIMD16<UInt8>.self)
            UnsafeMutableRawPointer(low + i).storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: v & UInt16((1 << lowBits) - 1)),
                                                        as: SIMD16<UInt8>.self)
            i += 16
        }
        while i < count {
            high[i] = UInt8(truncatingIfNeeded: input[i] >> UInt16(lowBits))
            low[i] = UInt8(truncatingIfNeeded: input[i] & UInt16((1 << lowBits) - 1))
            i += 1
        }
    }
}

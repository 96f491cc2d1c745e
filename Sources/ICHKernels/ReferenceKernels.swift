/// Sizes and bounds of a convolution or pooling window along one axis (shared by every executor and kernel).
public enum ConvGeometry {
    @inline(__always)
    public static func outputLength(_ input: Int, kernel: Int, stride: Int, padding: Int) -> Int {
        (input + 2 * padding - kernel) / stride + 1
    }

    /// The output positions o whose tap reads inside the input: 0 <= o * stride + tap - padding < input.
    @inline(__always)
    public static func validOutputs(input: Int, output: Int, tap: Int, stride: Int, padding: Int) -> Range<Int> {
        let lo = max(0, (padding - tap + stride - 1) / stride)
        let hi = min(output, (input - 1 + padding - tap) / stride + 1)
        return lo..<max(lo, hi)
    }
}

/// Plain loops with exact integer semantics: the reference every optimised kernel is tested against, and the
/// int8 engine's kernels until the SIMD ones replace them. Tensors are CHW, batch 1.
public enum ReferenceKernels {
    public struct ConvShape: Sendable, Equatable {
        public var inChannels, inHeight, inWidth: Int
        public var outChannels, kernel, stride, padding: Int

        public init(inChannels: Int, inHeight: Int, inWidth: Int, outChannels: Int, kernel: Int, stride: Int, padding: Int) {
            self.inChannels = inChannels
            self.inHeight = inHeight
            self.inWidth = inWidth
            self.outChannels = outChannels
            self.kernel = kernel
            self.stride = stride
            self.padding = padding
        }

        public var outHeight: Int { ConvGeometry.outputLength(inHeight, kernel: kernel, stride: stride, padding: padding) }
        public var outWidth: Int { ConvGeometry.outputLength(inWidth, kernel: kernel, stride: stride, padding: padding) }
    }

    /// Accumulators of a u8 x s8 convolution: acc[o][y][x] = bias[o] + sum (in - inZero) * w[o][i][ky][kx].
    /// Taps in the padding contribute nothing (they read the zero point). `acc` holds outChannels x outH x outW.
    public static func convAccumulate(_ s: ConvShape, input: UnsafePointer<UInt8>, inZero: Int32,
                                      weights: UnsafePointer<Int8>, bias: UnsafePointer<Int32>,
                                      acc: UnsafeMutablePointer<Int32>) {
        let oh = s.outHeight, ow = s.outWidth, k = s.kernel
        let plane = oh * ow
        for o in 0..<s.outChannels {
            let out = acc + o * plane
            for j in 0..<plane { out[j] = bias[o] }
            for i in 0..<s.inChannels {
                let src = input + i * s.inHeight * s.inWidth
                for ky in 0..<k {
                    let rows = ConvGeometry.validOutputs(input: s.inHeight, output: oh, tap: ky, stride: s.stride, padding: s.padding)
                    for kx in 0..<k {
                        let cols = ConvGeometry.validOutputs(input: s.inWidth, output: ow, tap: kx, stride: s.stride, padding: s.padding)
                        let w = Int32(weights[((o * s.inChannels + i) * k + ky) * k + kx])
                        for oy in rows {
                            let row = src + (oy * s.stride + ky - s.padding) * s.inWidth + kx - s.padding
                            let dst = out + oy * ow
                            for ox in cols { dst[ox] &+= (Int32(row[ox * s.stride]) &- inZero) &* w }
                        }
                    }
                }
            }
        }
    }

    /// Requantises `channels` planes of accumulators with per-channel scales, optionally adding a residual.
    /// `pixels` limits the work to part of every plane (default: all of it).
    /// `accBand`: the accumulators hold only output pixels `accBand.first...` with rows of `accBand.count`
    /// (a band of the plane, see `ConvGEMM.convAccumulate(rows:)`); default: the whole plane.
    /// Eight pixels at a time in SIMD8<Float> with exactly the scalar `requantize`'s operations (see
    /// `requantize8`), the rest one by one.
    public static func requantizePlanes(acc: UnsafePointer<Int32>, channels: Int, plane: Int, scales: UnsafePointer<Float>,
                                        clamp: OutputClamp, residual: UnsafePointer<UInt8>? = nil, residualZero: Int32 = 0,
                                        residualScale: Float = 0, output: UnsafeMutablePointer<UInt8>, pixels: Range<Int>? = nil,
                                        accBand: (first: Int, count: Int)? = nil) {
        let span = pixels ?? 0..<plane
        let (first, stride) = accBand ?? (0, plane)
        for o in 0..<channels {
            let base = o * plane, a = acc + o * stride - first
            var j = span.lowerBound
            while j + 8 <= span.upperBound {
                requantize8(a + j, scale: scales[o], residual: residual.map { $0 + base + j }, residualZero: residualZero,
                            residualScale: residualScale, clamp: clamp, output: output + base + j)
                j += 8
            }
            if let residual {
                for j in j..<span.upperBound {
                    output[base + j] = requantize(a[j], scale: scales[o], residual: residual[base + j], residualZero: residualZero,
                                                  residualScale: residualScale, zero: clamp.zero, lower: clamp.lower, upper: clamp.upper)
                }
            } else {
                for j in j..<span.upperBound {
                    output[base + j] = requantize(a[j], scale: scales[o], zero: clamp.zero, lower: clamp.lower, upper: clamp.upper)
                }
            }
        }
    }

    /// Eight `requantize` results at once, bit for bit: the same fp32 multiply (and multiply and add for the
    /// residual, in the same order; Swift does not contract them into FMAs), the same clamp to integral
    /// bounds, and round-to-nearest-even by adding 1.5 x 2^23 (exact for |v| < 2^22: the sum's ulp is 1, and
    /// IEEE addition rounds to nearest even), which avoids the trapping Float -> Int32 conversion that kept
    /// the scalar loop from vectorising.
    @inline(__always)
    static func requantize8(_ acc: UnsafePointer<Int32>, scale: Float, residual: UnsafePointer<UInt8>?, residualZero: Int32,
                            residualScale: Float, clamp: OutputClamp, output: UnsafeMutablePointer<UInt8>) {
        let a = UnsafeRawPointer(acc).loadUnaligned(as: SIMD8<Int32>.self)
        var v = SIMD8<Float>()
        for i in 0..<8 { v[i] = Float(a[i]) * scale }
        if let residual {
            let r = UnsafeRawPointer(residual).loadUnaligned(as: SIMD8<UInt8>.self)
            for i in 0..<8 { v[i] = v[i] + Float(Int32(r[i]) &- residualZero) * residualScale }
        }
        let magic: Float = 12_582_912  // 1.5 x 2^23
        var q = SIMD8<Int32>()
        for i in 0..<8 {
            let clamped = min(max(v[i], clamp.lower), clamp.upper) + magic
            q[i] = Int32(bitPattern: clamped.bitPattern) &- Int32(bitPattern: magic.bitPattern) &+ clamp.zero
        }
        for i in 0..<8 { output[i] = UInt8(truncatingIfNeeded: q[i]) }
    }

    /// 3x3 stride-2 max pool with padding 1 on bytes of one quantisation (padding never wins).
    public static func maxPool3x3s2(input: UnsafePointer<UInt8>, channels: Int, height: Int, width: Int,
                                    output: UnsafeMutablePointer<UInt8>) {
        let oh = ConvGeometry.outputLength(height, kernel: 3, stride: 2, padding: 1)
        let ow = ConvGeometry.outputLength(width, kernel: 3, stride: 2, padding: 1)
        for c in 0..<channels {
            for oy in 0..<oh {
                for ox in 0..<ow {
                    var m: UInt8 = 0
                    for ky in 0..<3 {
                        let iy = oy * 2 + ky - 1
                        guard iy >= 0 && iy < height else { continue }
                        for kx in 0..<3 {
                            let ix = ox * 2 + kx - 1
                            guard ix >= 0 && ix < width else { continue }
                            m = max(m, input[(c * height + iy) * width + ix])
                        }
                    }
                    output[(c * oh + oy) * ow + ox] = m
                }
            }
        }
    }

    /// Per channel: sum of (x - zero) over the plane (for average pooling) and the maximum byte.
    public static func channelSumsAndMaxima(input: UnsafePointer<UInt8>, channels: Int, plane: Int, zero: Int32,
                                            sums: UnsafeMutablePointer<Int32>, maxima: UnsafeMutablePointer<UInt8>) {
        for c in 0..<channels {
            var sum: Int32 = 0
            var m: UInt8 = 0
            for j in 0..<plane {
                let v = input[c * plane + j]
                sum &+= Int32(v) &- zero
                m = max(m, v)
            }
            sums[c] = sum
            maxima[c] = m
        }
    }

    /// acc[o] = bias[o] + sum (x - xZero) * w[o][i]
    public static func linearAccumulate(input: UnsafePointer<UInt8>, inFeatures: Int, inZero: Int32, weights: UnsafePointer<Int8>,
                                        bias: UnsafePointer<Int32>, outFeatures: Int, acc: UnsafeMutablePointer<Int32>) {
        for o in 0..<outFeatures {
            var a = bias[o]
            for i in 0..<inFeatures { a &+= (Int32(input[i]) &- inZero) &* Int32(weights[o * inFeatures + i]) }
            acc[o] = a
        }
    }
}

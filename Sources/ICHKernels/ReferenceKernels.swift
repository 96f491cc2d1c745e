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

    /// Requantises `channels` planes of accumulators with per-channel scales into bytes (or 12-bit values,
    /// `fine`), int16 (the shortcut path) or both, optionally adding a residual. `pixels` limits the work to part
    /// of every plane (default: all of it). `accBand`: the accumulators hold only output pixels
    /// `accBand.first...` with rows of `accBand.count` (a band of the plane, see `ConvGEMM.convAccumulate(rows:)`);
    /// default: the whole plane. `high`: the high pass's accumulators of a convolution over a 12-bit input
    /// (`acc` then holds the low pass's; same band convention), combined as FineActivations says.
    /// Eight pixels at a time in SIMD8<Float> with exactly the scalar functions' operations (see
    /// `RequantizeOutputs.store8`), the rest one by one. The residual, accumulator and output kinds are dispatched
    /// once per call into loops specialised for them (a per-pixel switch cost 3% of the whole network).
    public static func requantizePlanes(acc: UnsafePointer<Int32>, channels: Int, plane: Int, residual: ResidualInput? = nil,
                                        bytes: ByteTarget?, fine: FineTarget? = nil, wide: WideTarget? = nil,
                                        pixels: Range<Int>? = nil, accBand: (first: Int, count: Int)? = nil,
                                        high: (acc: UnsafePointer<Int32>, first: Int, count: Int)? = nil) {
        let span = pixels ?? 0..<plane
        let band = accBand ?? (0, plane)
        let low = Accumulators(acc: acc, first: band.first, count: band.count)
        @inline(__always)
        func run<R: ResidualLoad, A: AccumulatorLoad>(_ r: R, _ a: A) {
            switch (bytes, fine, wide) {
            case (let b?, _, let w?): requantizeLoop(a, channels, plane, span, r, BothTargets(narrow: b, wide: w))
            case (nil, let f?, let w?): requantizeLoop(a, channels, plane, span, r, BothTargets(narrow: f, wide: w))
            case (let b?, _, nil): requantizeLoop(a, channels, plane, span, r, b)
            case (nil, let f?, nil): requantizeLoop(a, channels, plane, span, r, f)
            case (nil, nil, let w?): requantizeLoop(a, channels, plane, span, r, w)
            case (nil, nil, nil): break
            }
        }
        @inline(__always)
        func run<R: ResidualLoad>(_ r: R) {
            if let high {
                run(r, SplitAccumulators(high: Accumulators(acc: high.acc, first: high.first, count: high.count), low: low))
            } else {
                run(r, low)
            }
        }
        switch residual {
        case nil: run(NoResidual())
        case .bytes(let p, let zero)?: run(NarrowResidual(data: p, zero: zero))
        case .fine(let p, let zero)?: run(NarrowResidual(data: p, zero: zero))
        case .wide(let p)?: run(WideResidual(data: p))
        }
    }

    @inline(__always)
    static func requantizeLoop<A: AccumulatorLoad, R: ResidualLoad, T: RequantizeOutputs>(_ acc: A, _ channels: Int, _ plane: Int,
                                                                                          _ span: Range<Int>, _ residual: R,
                                                                                          _ target: T) {
        for o in 0..<channels {
            let base = o * plane, a = acc.channel(o)
            var j = span.lowerBound
            while j + 8 <= span.upperBound {
                target.store8(a.values8(at: j), residual: residual.values8(at: base + j), channel: o, at: base + j, R.self)
                j += 8
            }
            for j in j..<span.upperBound {
                target.store(a.value(at: j), residual: residual.value(at: base + j), channel: o, at: base + j, R.self)
            }
        }
    }

    /// The shortcut a requantisation adds: bytes or 12-bit values with their zero point, or int16 of the
    /// shortcut path.
    public enum ResidualInput {
        case bytes(UnsafePointer<UInt8>, zero: Int32)
        case fine(UnsafePointer<UInt16>, zero: Int32)
        case wide(UnsafePointer<Int16>)
    }

    /// Where a requantisation writes: bytes (`ByteTarget`, clamp from the output's zero point) or int16 of the
    /// shortcut path (`WideTarget`, clamp `OutputClamp.wide`); per-channel scales (s_in x s_w / s_out), and the
    /// residual's scale relative to the output's (0 without a residual).
    public struct RequantizeTarget<Output: FixedWidthInteger & SIMDScalar> {
        public var data: UnsafeMutablePointer<Output>
        public var scales: UnsafePointer<Float>
        public var clamp: OutputClamp
        public var residualScale: Float

        public init(data: UnsafeMutablePointer<Output>, scales: UnsafePointer<Float>, clamp: OutputClamp, residualScale: Float = 0) {
            self.data = data
            self.scales = scales
            self.clamp = clamp
            self.residualScale = residualScale
        }
    }

    public typealias ByteTarget = RequantizeTarget<UInt8>
    /// 12-bit activations (clamp `OutputClamp(zero:relu:maximum: 4095)`).
    public typealias FineTarget = RequantizeTarget<UInt16>
    public typealias WideTarget = RequantizeTarget<Int16>

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

    /// Per channel of the int16 shortcut path: sum over the plane (exact: planes of at most
    /// `WideLimit.maxPooledPlane` values) and the maximum.
    public static func channelSumsAndMaxima(input: UnsafePointer<Int16>, channels: Int, plane: Int,
                                            sums: UnsafeMutablePointer<Int32>, maxima: UnsafeMutablePointer<Int16>) {
        precondition(plane <= WideLimit.maxPooledPlane, "an int16 plane of \(plane) values can overflow its Int32 sum")
        for c in 0..<channels {
            var sum: Int32 = 0
            var m = Int16.min
            for j in 0..<plane {
                let v = input[c * plane + j]
                sum &+= Int32(v)
                m = max(m, v)
            }
            sums[c] = sum
            maxima[c] = m
        }
    }

    /// acc[o] = bias[o] + sum x * w[o][i] for int16 inputs of the shortcut path, in Int64: 1024 inputs of
    /// 32767 x 127 can pass Int32.
    public static func linearAccumulate(input: UnsafePointer<Int16>, inFeatures: Int, weights: UnsafePointer<Int8>,
                                        bias: UnsafePointer<Int32>, outFeatures: Int, acc: UnsafeMutablePointer<Int64>) {
        for o in 0..<outFeatures {
            var a = Int64(bias[o])
            for i in 0..<inFeatures { a &+= Int64(input[i]) &* Int64(weights[o * inFeatures + i]) }
            acc[o] = a
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

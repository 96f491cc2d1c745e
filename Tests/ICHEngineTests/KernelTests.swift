import ICHKernels
import ICHPhantom
import Testing

/// The reference integer kernels against a second, deliberately naive formulation (every tap bounds-checked,
/// each output computed on its own), over random shapes with edges, odd channel counts, strides and padding.
@Suite struct KernelTests {
    struct Shape: CustomTestStringConvertible, Sendable {
        var s: ReferenceKernels.ConvShape
        var testDescription: String { "\(s.inChannels)x\(s.inHeight)x\(s.inWidth) -> \(s.outChannels), k\(s.kernel) s\(s.stride) p\(s.padding)" }
    }

    /// Work split unevenly over two parts, as two threads would run it (each part with its own buffers).
    static let uneven = Parallel(count: 2) { n, body in
        body(0, 0..<(n / 3))
        body(1, (n / 3)..<n)
    }

    static let shapes: [Shape] = {
        var rng = SeededGenerator(seed: 42)
        var out: [Shape] = []
        for (k, p) in [(1, 0), (3, 1), (7, 3), (3, 0), (3, 2)] {
            for stride in [1, 2] {
                let h = 1 + Int(rng.next() % 11), w = 1 + Int(rng.next() % 13)
                guard h + 2 * p >= k, w + 2 * p >= k else { continue }
                out.append(Shape(s: .init(inChannels: 1 + Int(rng.next() % 5), inHeight: h, inWidth: w,
                                          outChannels: 1 + Int(rng.next() % 7), kernel: k, stride: stride, padding: p)))
            }
        }
        return out
    }()

    @Test(arguments: shapes)
    func convAccumulatorsMatchNaive(_ shape: Shape) {
        let s = shape.s
        var rng = SeededGenerator(seed: UInt64(s.inHeight * 100 + s.inWidth))
        let input = (0..<(s.inChannels * s.inHeight * s.inWidth)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let weights = (0..<(s.outChannels * s.inChannels * s.kernel * s.kernel)).map { _ in Int8(Int(rng.next() % 255) - 127) }
        let bias = (0..<s.outChannels).map { _ in Int32(Int(rng.next() % 20001) - 10000) }
        let zero = Int32(rng.next() % 256)
        var acc = [Int32](repeating: 0, count: s.outChannels * s.outHeight * s.outWidth)
        ReferenceKernels.convAccumulate(s, input: input, inZero: zero, weights: weights, bias: bias, acc: &acc)
        for o in 0..<s.outChannels {
            for oy in 0..<s.outHeight {
                for ox in 0..<s.outWidth {
                    var expected = Int(bias[o])
                    for i in 0..<s.inChannels {
                        for ky in 0..<s.kernel {
                            for kx in 0..<s.kernel {
                                let iy = oy * s.stride + ky - s.padding, ix = ox * s.stride + kx - s.padding
                                if iy < 0 || iy >= s.inHeight || ix < 0 || ix >= s.inWidth { continue }
                                let x = Int(input[(i * s.inHeight + iy) * s.inWidth + ix]) - Int(zero)
                                expected += x * Int(weights[((o * s.inChannels + i) * s.kernel + ky) * s.kernel + kx])
                            }
                        }
                    }
                    #expect(Int(acc[(o * s.outHeight + oy) * s.outWidth + ox]) == expected)
                }
            }
        }
    }

    /// Both convolution kernels (pairs with int16 or int8 weights, dot products) give the reference's
    /// accumulators bit for bit.
    @Test(arguments: shapes + [Shape(s: .init(inChannels: 64, inHeight: 16, inWidth: 16, outChannels: 64, kernel: 3, stride: 1, padding: 1)),
                               Shape(s: .init(inChannels: 3, inHeight: 37, inWidth: 29, outChannels: 64, kernel: 7, stride: 2, padding: 3)),
                               Shape(s: .init(inChannels: 33, inHeight: 9, inWidth: 9, outChannels: 18, kernel: 1, stride: 2, padding: 0)),
                               // Rows longer than a 16-pixel tile, straddling tiles (37), and exactly two tiles (32).
                               Shape(s: .init(inChannels: 5, inHeight: 6, inWidth: 37, outChannels: 6, kernel: 3, stride: 1, padding: 1)),
                               Shape(s: .init(inChannels: 2, inHeight: 3, inWidth: 32, outChannels: 5, kernel: 1, stride: 1, padding: 0)),
                               // Bordered im2col (output rows of whole 8-pixel halves): a tile over two rows and a
                               // half past the end (5 x 8 pixels), odd K, stride 2 from odd and even widths,
                               // paddings 0 to 3, a 1x1 downsample.
                               Shape(s: .init(inChannels: 5, inHeight: 5, inWidth: 8, outChannels: 6, kernel: 3, stride: 1, padding: 1)),
                               Shape(s: .init(inChannels: 3, inHeight: 33, inWidth: 31, outChannels: 10, kernel: 7, stride: 2, padding: 3)),
                               Shape(s: .init(inChannels: 9, inHeight: 16, inWidth: 16, outChannels: 7, kernel: 3, stride: 2, padding: 1)),
                               Shape(s: .init(inChannels: 6, inHeight: 9, inWidth: 15, outChannels: 5, kernel: 1, stride: 2, padding: 0)),
                               Shape(s: .init(inChannels: 4, inHeight: 7, inWidth: 10, outChannels: 3, kernel: 3, stride: 1, padding: 0)),
                               Shape(s: .init(inChannels: 3, inHeight: 6, inWidth: 6, outChannels: 4, kernel: 3, stride: 1, padding: 2)),
                               Shape(s: .init(inChannels: 3, inHeight: 12, inWidth: 14, outChannels: 5, kernel: 3, stride: 2, padding: 2))])
    func gemmKernelMatchesReference(_ shape: Shape) {
        let s = shape.s
        var rng = SeededGenerator(seed: UInt64(s.inChannels * 1000 + s.outChannels))
        let input = (0..<(s.inChannels * s.inHeight * s.inWidth)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        // Extremes included: -127 and 127 weights with 0 and 255 inputs stress the int16 pair sums.
        let weights = (0..<(s.outChannels * s.inChannels * s.kernel * s.kernel)).map { i in i % 7 == 0 ? Int8(127) : i % 11 == 0 ? Int8(-127) : Int8(Int(rng.next() % 255) - 127) }
        let bias = (0..<s.outChannels).map { _ in Int32(Int(rng.next() % 20001) - 10000) }
        for zero in [Int32(0), Int32(rng.next() % 256), 255] {
            var expected = [Int32](repeating: 0, count: s.outChannels * s.outHeight * s.outWidth)
            ReferenceKernels.convAccumulate(s, input: input, inZero: zero, weights: weights, bias: bias, acc: &expected)
            // The dot kernel both ways: int32 products (sdot on the Pi 5) and int16 products (the Pi 4's kernel;
            // these weights are never -128, so it applies).
            for (kind, wide, int16) in [(ConvKernel.pairs, true, false), (.pairs, false, false), (.dot, false, false), (.dot, false, true)] {
                let packed = PackedConvWeights(weights: weights, outChannels: s.outChannels, inChannels: s.inChannels,
                                               kernel: s.kernel, kind: kind, wide: wide, int16Products: kind == .dot ? int16 : nil)
                #expect(packed.wide == wide)
                #expect(packed.int16Products == int16)
                var got = [Int32](repeating: 0, count: expected.count)
                var scratch = [UInt8](repeating: 0, count: packed.scratchBytes(s, parts: Self.uneven.count))
                // Split the work unevenly, as several threads would.
                ConvGEMM.convAccumulate(s, input: input, inZero: zero, weights: packed, bias: bias, acc: &got, scratch: &scratch,
                                        parallel: Self.uneven)
                #expect(got == expected, "\(kind) kernel (wide: \(wide), int16 products: \(int16)), zero point \(zero)")
                // Band by band (as the engine runs layers with large accumulators): the same accumulators.
                for bandRows in [1, 2] where bandRows < s.outHeight {
                    var banded = [Int32](repeating: 0, count: expected.count)
                    var finished = 0
                    for top in stride(from: 0, to: s.outHeight, by: bandRows) {
                        let band = top..<min(s.outHeight, top + bandRows), pixels = band.count * s.outWidth
                        var accBand = [Int32](repeating: 0, count: s.outChannels * pixels)
                        var scratchBand = [UInt8](repeating: 0, count: packed.scratchBytes(s, rows: band.count))
                        ConvGEMM.convAccumulate(s, rows: band, input: input, inZero: zero, weights: packed, bias: bias, acc: &accBand,
                                                scratch: &scratchBand, finish: { finished += $0.count })
                        for o in 0..<s.outChannels {
                            for j in 0..<pixels { banded[o * s.outHeight * s.outWidth + top * s.outWidth + j] = accBand[o * pixels + j] }
                        }
                    }
                    #expect(banded == expected, "\(kind) kernel (wide: \(wide), int16 products: \(int16)), bands of \(bandRows) rows, zero point \(zero)")
                    #expect(finished == s.outHeight * s.outWidth)
                }
            }
        }
    }

    /// The dot kernel's int16 products are exact only without -128 weights: with one it keeps int32 products
    /// (whatever the platform prefers), and the accumulators stay the reference's, extremes included.
    @Test func dotKernelWithMinus128WeightsKeepsInt32Products() {
        let s = ReferenceKernels.ConvShape(inChannels: 64, inHeight: 7, inWidth: 11, outChannels: 5, kernel: 3, stride: 1, padding: 1)
        var rng = SeededGenerator(seed: 7)
        let input = (0..<(s.inChannels * s.inHeight * s.inWidth)).map { i in i % 3 == 0 ? UInt8(0) : UInt8(truncatingIfNeeded: rng.next()) }
        let weights = (0..<(s.outChannels * s.inChannels * 9)).map { i in i % 2 == 0 ? Int8.min : Int8(truncatingIfNeeded: rng.next()) }
        let bias = [Int32](repeating: 5, count: s.outChannels)
        let packed = PackedConvWeights(weights: weights, outChannels: s.outChannels, inChannels: s.inChannels, kernel: 3, kind: .dot)
        #expect(!packed.int16Products)
        var expected = [Int32](repeating: 0, count: s.outChannels * s.outHeight * s.outWidth), got = expected
        ReferenceKernels.convAccumulate(s, input: input, inZero: 255, weights: weights, bias: bias, acc: &expected)
        var scratch = [UInt8](repeating: 0, count: packed.scratchBytes(s, parts: Self.uneven.count))
        ConvGEMM.convAccumulate(s, input: input, inZero: 255, weights: packed, bias: bias, acc: &got, scratch: &scratch, parallel: Self.uneven)
        #expect(got == expected)
        let allowed = PackedConvWeights(weights: weights.map { $0 == Int8.min ? -127 : $0 }, outChannels: s.outChannels,
                                        inChannels: s.inChannels, kernel: 3, kind: .dot, int16Products: true)
        #expect(allowed.int16Products)
    }

    /// Winograd F(2x2, 3x3) in integers gives the reference's accumulators bit for bit: odd channel counts,
    /// extreme weights and inputs, every zero point kind, padding on all four sides, work split unevenly; with
    /// the GEMM on either tile (x86's vpmaddwd pairs, arm64's smlal lanes), and in 4 x 4-tile blocks (lanes only:
    /// widths and heights that are multiples of 8, layer4's 8 x 8 with its 512 channels).
    @Test(arguments: [Shape(s: .init(inChannels: 5, inHeight: 6, inWidth: 32, outChannels: 6, kernel: 3, stride: 1, padding: 1)),
                      Shape(s: .init(inChannels: 64, inHeight: 8, inWidth: 64, outChannels: 64, kernel: 3, stride: 1, padding: 1)),
                      Shape(s: .init(inChannels: 128, inHeight: 4, inWidth: 32, outChannels: 9, kernel: 3, stride: 1, padding: 1)),
                      // Blocks of 8 tiles from two tile rows (layer3's shape at 256 px, and odd channel counts);
                      // 300 channels make the int32 sums wrap for extreme values, which must not matter.
                      Shape(s: .init(inChannels: 256, inHeight: 16, inWidth: 16, outChannels: 12, kernel: 3, stride: 1, padding: 1)),
                      Shape(s: .init(inChannels: 5, inHeight: 8, inWidth: 48, outChannels: 7, kernel: 3, stride: 1, padding: 1)),
                      Shape(s: .init(inChannels: 300, inHeight: 4, inWidth: 16, outChannels: 5, kernel: 3, stride: 1, padding: 1)),
                      Shape(s: .init(inChannels: 512, inHeight: 8, inWidth: 8, outChannels: 6, kernel: 3, stride: 1, padding: 1)),
                      Shape(s: .init(inChannels: 7, inHeight: 16, inWidth: 24, outChannels: 5, kernel: 3, stride: 1, padding: 1))])
    func winogradMatchesReference(_ shape: Shape) {
        let s = shape.s
        let narrow = s.outWidth % 16 != 0
        #expect(WinogradWeights.applies(s, lanes: true))
        #expect(WinogradWeights.applies(s) == !narrow)
        var rng = SeededGenerator(seed: UInt64(s.inChannels * 31 + s.outChannels))
        let input = (0..<(s.inChannels * s.inHeight * s.inWidth)).map { i in i % 13 == 0 ? UInt8(255) : i % 17 == 0 ? 0 : UInt8(truncatingIfNeeded: rng.next()) }
        let weights = (0..<(s.outChannels * s.inChannels * 9)).map { i in i % 7 == 0 ? Int8(127) : i % 11 == 0 ? Int8(-127) : Int8(Int(rng.next() % 255) - 127) }
        let bias = (0..<s.outChannels).map { _ in Int32(Int(rng.next() % 20001) - 10000) }
        for lanes in narrow ? [true] : [false, true] {
            let packed = WinogradWeights(weights: weights, outChannels: s.outChannels, inChannels: s.inChannels, lanes: lanes)
            for zero in [Int32(0), Int32(rng.next() % 256), 255] {
                var expected = [Int32](repeating: 0, count: s.outChannels * s.outHeight * s.outWidth)
                ReferenceKernels.convAccumulate(s, input: input, inZero: zero, weights: weights, bias: bias, acc: &expected)
                var got = [Int32](repeating: 0, count: expected.count)
                var scratch = [UInt8](repeating: 0, count: packed.scratchBytes(s, parts: Self.uneven.count))
                var finished: [Range<Int>] = []
                // Bands arrive with their own accumulators (channel-major, the band's pixel count per channel).
                let plane = s.outHeight * s.outWidth
                ConvWinograd.convAccumulate(s, input: input, inZero: zero, weights: packed, bias: bias, scratch: &scratch,
                                            parallel: Self.uneven,
                                            finish: { pixels, acc in
                                                finished.append(pixels)
                                                for o in 0..<s.outChannels {
                                                    for (j, p) in pixels.enumerated() { got[o * plane + p] = acc[o * pixels.count + j] }
                                                }
                                            })
                #expect(got == expected, "zero point \(zero), lanes \(lanes)")
                #expect(finished.sorted { $0.lowerBound < $1.lowerBound }.reduce(0) { $0 == $1.lowerBound ? $1.upperBound : -1 } == plane)
            }
        }
        #expect(!WinogradWeights.applies(.init(inChannels: 4, inHeight: 6, inWidth: 30, outChannels: 4, kernel: 3, stride: 1, padding: 1)))
        #expect(!WinogradWeights.applies(.init(inChannels: 4, inHeight: 6, inWidth: 16, outChannels: 4, kernel: 3, stride: 1, padding: 1)))
        #expect(!WinogradWeights.applies(.init(inChannels: 4, inHeight: 12, inWidth: 8, outChannels: 4, kernel: 3, stride: 1, padding: 1), lanes: true))
        // Split engines: the lanes GEMM (arm64) takes a shape only with at least one band of tile rows per part.
        let layer3 = ReferenceKernels.ConvShape(inChannels: 256, inHeight: 16, inWidth: 16, outChannels: 256, kernel: 3, stride: 1, padding: 1)
        let layer4 = ReferenceKernels.ConvShape(inChannels: 512, inHeight: 8, inWidth: 8, outChannels: 512, kernel: 3, stride: 1, padding: 1)
        #expect(ConvWinograd.bands(layer3) == 4 && ConvWinograd.bands(layer4) == 1)
        #expect(WinogradWeights.takes(layer4, lanes: true, parts: 1) && !WinogradWeights.takes(layer4, lanes: true, parts: 2))
        #expect(WinogradWeights.takes(layer3, lanes: true, parts: 4) && !WinogradWeights.takes(layer3, lanes: true, parts: 5))
        #expect(WinogradWeights.takes(layer3, lanes: false, parts: 5))  // x86's rule: unchanged
        #expect(!WinogradWeights.applies(.init(inChannels: 4, inHeight: 6, inWidth: 64, outChannels: 4, kernel: 3, stride: 2, padding: 1)))
    }

    @Test(arguments: [(1, 1), (1, 2), (2, 1), (4, 4), (5, 7), (64, 64), (33, 17)])
    func maxPoolMatchesReference(_ height: Int, _ width: Int) {
        var rng = SeededGenerator(seed: UInt64(height * 100 + width))
        let input = (0..<(3 * height * width)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let oh = (height - 1) / 2 + 1, ow = (width - 1) / 2 + 1
        var expected = [UInt8](repeating: 0, count: 3 * oh * ow), got = expected
        ReferenceKernels.maxPool3x3s2(input: input, channels: 3, height: height, width: width, output: &expected)
        PoolKernels.maxPool3x3s2(input: input, channels: 3, height: height, width: width, output: &got)
        #expect(got == expected)
    }

    @Test func requantizationFollowsTheContract() {
        let plain = OutputClamp(zero: 10, relu: false)
        // round half to even: 0.5 -> 0, 1.5 -> 2, -0.5 -> 0, -1.5 -> -2
        #expect(requantize(1, scale: 0.5, zero: plain.zero, lower: plain.lower, upper: plain.upper) == 10)
        #expect(requantize(3, scale: 0.5, zero: plain.zero, lower: plain.lower, upper: plain.upper) == 12)
        #expect(requantize(-1, scale: 0.5, zero: plain.zero, lower: plain.lower, upper: plain.upper) == 10)
        #expect(requantize(-3, scale: 0.5, zero: plain.zero, lower: plain.lower, upper: plain.upper) == 8)
        // clamps at 0 and 255 without a zero-point wrap
        #expect(requantize(-100_000, scale: 1, zero: plain.zero, lower: plain.lower, upper: plain.upper) == 0)
        #expect(requantize(Int32.max, scale: 1, zero: plain.zero, lower: plain.lower, upper: plain.upper) == 255)
        // ReLU: nothing below the zero point
        let relu = OutputClamp(zero: 10, relu: true)
        #expect(requantize(-7, scale: 1, zero: relu.zero, lower: relu.lower, upper: relu.upper) == 10)
        // residual: v = acc*s + (r - rz)*rs
        #expect(requantize(4, scale: 0.5, residual: 20 - 16, residualScale: 0.25, zero: 0, lower: 0, upper: 255) == 3)
        // a real value (an Int64 accumulator of a linear layer on int16 inputs, times its scale)
        #expect(requantize(real: Float(Int64(3)) * 0.5, zero: plain.zero, lower: plain.lower, upper: plain.upper) as UInt8 == 12)
        #expect(requantize(real: Float(Int64(1) << 40), zero: plain.zero, lower: plain.lower, upper: plain.upper) as UInt8 == 255)
        // int16 shortcut path: symmetric, -32768 never produced, ReLU at 0, ties to even
        #expect(requantizeWide(2.5, relu: false) == 2)
        #expect(requantizeWide(-3.5, relu: false) == -4)
        #expect(requantizeWide(1e9, relu: false) == 32767)
        #expect(requantizeWide(-1e9, relu: false) == -32767)
        #expect(requantizeWide(-7, relu: true) == 0)
    }

    @Test func poolingAndLinear() {
        // 1 channel 4x4 ramp: max pool 3x3 s2 p1 -> 2x2 maxima
        let input: [UInt8] = Array(0..<16)
        var pooled = [UInt8](repeating: 0, count: 4)
        ReferenceKernels.maxPool3x3s2(input: input, channels: 1, height: 4, width: 4, output: &pooled)
        #expect(pooled == [5, 7, 13, 15])
        var sums = [Int32](repeating: 0, count: 1), maxima = [UInt8](repeating: 0, count: 1)
        ReferenceKernels.channelSumsAndMaxima(input: input, channels: 1, plane: 16, zero: 3, sums: &sums, maxima: &maxima)
        #expect(sums == [72])
        #expect(maxima == [15])
        // int16 shortcut path: no zero point, negative values, Int16.min never wins over a real value
        let wideInput: [Int16] = [-300, 32767, 5, -32767, 1000, 2000, -1, 0]
        var wideMaxima = [Int16](repeating: 0, count: 2)
        var wideSums = [Int32](repeating: 0, count: 2)
        ReferenceKernels.channelSumsAndMaxima(input: wideInput, channels: 2, plane: 4, sums: &wideSums, maxima: &wideMaxima)
        #expect(wideSums == [-295, 2999])
        #expect(wideMaxima == [32767, 2000])
        var acc = [Int32](repeating: 0, count: 2)
        ReferenceKernels.linearAccumulate(input: [1, 2, 3], inFeatures: 3, inZero: 1, weights: [1, 2, 3, -1, -2, -3], bias: [10, 20],
                                          outFeatures: 2, acc: &acc)
        let expected: [Int32] = [18, 12]
        #expect(acc == expected)
        // int16 inputs accumulate in Int64: 1024 x 32767 x 127 passes Int32.max
        var wideAcc = [Int64](repeating: 0, count: 1)
        ReferenceKernels.linearAccumulate(input: [Int16](repeating: 32767, count: 1024), inFeatures: 1024,
                                          weights: [Int8](repeating: 127, count: 1024), bias: [5], outFeatures: 1, acc: &wideAcc)
        #expect(wideAcc == [5 + 1024 * 32767 * 127])
    }
}

/// The float reference executor's im2col + GEMM convolution against naive loops, to rounding.
@Suite struct FloatKernelTests {
    @Test(arguments: KernelTests.shapes + [KernelTests.Shape(s: .init(inChannels: 3, inHeight: 37, inWidth: 29, outChannels: 9, kernel: 7, stride: 2, padding: 3))])
    func floatConvMatchesNaiveLoops(_ shape: KernelTests.Shape) {
        let s = shape.s
        var rng = SeededGenerator(seed: UInt64(s.inChannels * 77 + s.outChannels))
        func uniform() -> Float { Float(Int(rng.next() % 2001) - 1000) / 1000 }
        let input = (0..<(s.inChannels * s.inHeight * s.inWidth)).map { _ in uniform() }
        let weights = (0..<(s.outChannels * s.inChannels * s.kernel * s.kernel)).map { _ in uniform() }
        let bias = (0..<s.outChannels).map { _ in uniform() }
        let residual = (0..<(s.outChannels * s.outHeight * s.outWidth)).map { _ in uniform() }
        for (relu, withResidual) in [(false, false), (true, true)] {
            var got = [Float](repeating: .nan, count: residual.count)
            var scratch = [Float](repeating: .nan, count: FloatConvGEMM.scratchCount(s))
            residual.withUnsafeBufferPointer { r in
                FloatConvGEMM.conv(s, input: input, weights: weights, bias: bias, residual: withResidual ? r.baseAddress : nil,
                                   relu: relu, output: &got, scratch: &scratch)
            }
            for o in 0..<s.outChannels {
                for oy in 0..<s.outHeight {
                    for ox in 0..<s.outWidth {
                        var expected = Double(bias[o]), magnitude = abs(expected)
                        for i in 0..<s.inChannels {
                            for ky in 0..<s.kernel {
                                for kx in 0..<s.kernel {
                                    let iy = oy * s.stride + ky - s.padding, ix = ox * s.stride + kx - s.padding
                                    if iy < 0 || iy >= s.inHeight || ix < 0 || ix >= s.inWidth { continue }
                                    let term = Double(weights[((o * s.inChannels + i) * s.kernel + ky) * s.kernel + kx])
                                        * Double(input[(i * s.inHeight + iy) * s.inWidth + ix])
                                    expected += term
                                    magnitude += abs(term)
                                }
                            }
                        }
                        let j = (o * s.outHeight + oy) * s.outWidth + ox
                        if withResidual { expected += Double(residual[j]); magnitude += abs(Double(residual[j])) }
                        if relu { expected = max(expected, 0) }
                        #expect(abs(Double(got[j]) - expected) <= 1e-6 * magnitude + 1e-7, "output \(j), relu \(relu)")
                    }
                }
            }
        }
    }
}

/// The eight-wide requantisation against the scalar contract, bit for bit: ties at .5 (round to even),
/// values far outside the output range, both clamps, residuals, and spans that leave a scalar tail.
@Suite struct RequantizeTests {
    @Test func vectorisedRequantisationMatchesTheScalarContract() {
        var rng = SeededGenerator(seed: 99)
        let channels = 3, plane = 37
        // Accumulators times scale land on halves (ties) and on both sides of the clamps.
        let acc = (0..<(channels * plane)).map { i -> Int32 in
            switch i % 5 {
            case 0: Int32(i) * 2 + 1                          // x.5 after scale 0.5
            case 1: Int32(Int(rng.next() % 4_000_001) - 2_000_000)
            case 2: -Int32(i) * 3 - 1
            default: Int32(Int(rng.next() % 2001) - 1000)
            }
        }
        let residual = (0..<(channels * plane)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let wideResidual = (0..<(channels * plane)).map { _ in Int16(truncatingIfNeeded: rng.next()) }
        let scales: [Float] = [0.5, 0.0371, 1.25], wideScales: [Float] = [0.5, 3.1, 0.0125]
        enum Residual: CaseIterable { case none, bytes, wide }
        for (relu, zero) in [(false, Int32(128)), (true, 0), (true, 37), (false, 255)] {
            let clamp = OutputClamp(zero: zero, relu: relu)
            for kind in Residual.allCases {
                var got = [UInt8](repeating: 0, count: acc.count), gotWide = [Int16](repeating: 0, count: acc.count)
                residual.withUnsafeBufferPointer { r in
                    wideResidual.withUnsafeBufferPointer { w in
                        let input: ReferenceKernels.ResidualInput? = switch kind {
                        case .none: nil
                        case .bytes: .bytes(r.baseAddress!, zero: 91)
                        case .wide: .wide(w.baseAddress!)
                        }
                        ReferenceKernels.requantizePlanes(
                            acc: acc, channels: channels, plane: plane, residual: input,
                            bytes: .init(data: &got, scales: scales, clamp: clamp, residualScale: kind == .none ? 0 : 0.63),
                            wide: .init(data: &gotWide, scales: wideScales, clamp: .wide(relu: relu), residualScale: kind == .none ? 0 : 1.7),
                            pixels: 3..<plane)
                    }
                }
                for o in 0..<channels {
                    for j in 3..<plane {
                        let i = o * plane + j
                        let r: Int32 = switch kind {
                        case .none: 0
                        case .bytes: Int32(residual[i]) - 91
                        case .wide: Int32(wideResidual[i])
                        }
                        let expected = kind == .none
                            ? requantize(acc[i], scale: scales[o], zero: clamp.zero, lower: clamp.lower, upper: clamp.upper)
                            : requantize(acc[i], scale: scales[o], residual: r, residualScale: 0.63,
                                         zero: clamp.zero, lower: clamp.lower, upper: clamp.upper)
                        let expectedWide = requantizeWide(Float(acc[i]) * wideScales[o] + Float(r) * (kind == .none ? 0 : 1.7), relu: relu)
                        #expect(got[i] == expected, "channel \(o) pixel \(j) acc \(acc[i]) relu \(relu) zero \(zero) residual \(kind)")
                        #expect(gotWide[i] == expectedWide, "int16: channel \(o) pixel \(j) acc \(acc[i]) relu \(relu) residual \(kind)")
                    }
                    #expect(got[o * plane..<(o * plane + 3)].allSatisfy { $0 == 0 }, "pixels outside the span stay untouched")
                    #expect(gotWide[o * plane..<(o * plane + 3)].allSatisfy { $0 == 0 }, "pixels outside the span stay untouched")
                }
            }
        }
    }
}

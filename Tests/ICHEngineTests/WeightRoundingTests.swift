import ICHKernels
import ICHModel
import Testing

@testable import ICHConverter

@Suite struct WeightRoundingTests {
    /// Two parts run one after the other: exercises the kernels' split without threads.
    static let twoParts = Parallel(count: 2) { n, body in
        body(0, 0..<(n / 2))
        body(1, (n / 2)..<n)
    }

    static func random(_ count: Int, _ g: inout SystemRandomNumberGenerator) -> [Float] {
        (0..<count).map { _ in Float.random(in: -1...1, using: &g) }
    }

    /// The patches a convolution's weights see, written out directly: H = sum over output pixels of x x^T.
    static func naiveGram(_ s: ReferenceKernels.ConvShape, _ input: [Float]) -> [Double] {
        let depth = s.inChannels * s.kernel * s.kernel
        var h = [Double](repeating: 0, count: depth * depth)
        for oy in 0..<s.outHeight {
            for ox in 0..<s.outWidth {
                var x: [Double] = []
                for c in 0..<s.inChannels {
                    for ky in 0..<s.kernel {
                        for kx in 0..<s.kernel {
                            let iy = oy * s.stride + ky - s.padding, ix = ox * s.stride + kx - s.padding
                            let inside = iy >= 0 && iy < s.inHeight && ix >= 0 && ix < s.inWidth
                            x.append(inside ? Double(input[(c * s.inHeight + iy) * s.inWidth + ix]) : 0)
                        }
                    }
                }
                for i in 0..<depth { for j in 0..<depth { h[i * depth + j] += x[i] * x[j] } }
            }
        }
        return h
    }

    @Test(arguments: [
        (3, 9, 7, 3, 2, 1),    // odd depth (27), stride 2, padding, a partial pixel tile
        (8, 20, 20, 3, 1, 1),  // depth 72: several tiles per chunk, several chunks
        (5, 6, 6, 1, 1, 0),    // 1 x 1, depth 5
        (300, 2, 2, 1, 1, 0),  // depth 300: one tile per chunk
    ])
    func patchGramMatchesTheDirectSum(_ c: Int, _ height: Int, _ width: Int, _ k: Int, _ stride: Int, _ pad: Int) {
        var g = SystemRandomNumberGenerator()
        let s = ReferenceKernels.ConvShape(inChannels: c, inHeight: height, inWidth: width, outChannels: 4, kernel: k, stride: stride, padding: pad)
        let depth = c * k * k
        let inputs = [Self.random(c * height * width, &g), Self.random(c * height * width, &g)]
        var h = [Double](repeating: 0, count: depth * depth)
        var scratch = [Float](repeating: .nan, count: FloatConvGEMM.gramScratchCount(s))
        for (n, input) in inputs.enumerated() {
            input.withUnsafeBufferPointer { x in
                h.withUnsafeMutableBufferPointer { hp in
                    scratch.withUnsafeMutableBufferPointer { sp in
                        FloatConvGEMM.accumulateGram(s, input: x.baseAddress!, into: hp.baseAddress!, scratch: sp.baseAddress!,
                                                     parallel: n == 0 ? .serial : Self.twoParts)
                    }
                }
            }
        }
        h.withUnsafeMutableBufferPointer { FloatConvGEMM.mirrorGram($0.baseAddress!, depth: depth) }
        let a = Self.naiveGram(s, inputs[0]), b = Self.naiveGram(s, inputs[1])
        var worst = 0.0
        for i in 0..<(depth * depth) {
            let expected = a[i] + b[i]
            worst = max(worst, abs(h[i] - expected) / max(1, abs(expected)))
        }
        #expect(worst < 1e-5, "largest relative difference \(worst)")
    }

    @Test(arguments: [1, 16, 37])
    func inverseCholeskyFactorInvertsH(_ n: Int) throws {
        var g = SystemRandomNumberGenerator()
        let a = (0..<(n * n)).map { _ in Double.random(in: -1...1, using: &g) }
        var h = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { for k in 0..<n { h[i * n + j] += a[i * n + k] * a[j * n + k] } } }
        for i in 0..<n { h[i * n + i] += 0.1 }
        var u = h
        #expect(GPTQ.inverseCholeskyUpper(&u, n: n, parallel: Self.twoParts))
        for i in 0..<n {
            #expect(u[i * n + i] > 0)
            for j in 0..<i { #expect(u[i * n + j] == 0) }
        }
        // U^T U H = I.
        var worst = 0.0
        for i in 0..<n {
            for j in 0..<n {
                var v = 0.0
                for k in 0..<n {
                    var utu = 0.0
                    for m in 0..<n { utu += u[m * n + i] * u[m * n + k] }
                    v += utu * h[k * n + j]
                }
                worst = max(worst, abs(v - (i == j ? 1 : 0)))
            }
        }
        #expect(worst < 1e-8, "largest deviation from the identity \(worst)")
        var indefinite = h
        indefinite[n * n - 1] = -1
        #expect(!GPTQ.inverseCholeskyUpper(&indefinite, n: n))
    }

    /// Output error sum over samples of ((w_q - w) x)^2, the quantity GPTQ minimises (without dampening).
    static func outputError(_ w: [Float], _ q: [Int8], _ scales: [Float], rows: Int, _ h: [Double]) -> Double {
        let n = w.count / rows
        var total = 0.0
        for r in 0..<rows {
            let d = (0..<n).map { Double(q[r * n + $0]) * Double(scales[r]) - Double(w[r * n + $0]) }
            for i in 0..<n { for j in 0..<n { total += d[i] * h[i * n + j] * d[j] } }
        }
        return total
    }

    @Test func gptqLowersTheOutputErrorOnCorrelatedInputs() throws {
        var g = SystemRandomNumberGenerator()
        let rows = 8, n = 40, samples = 600
        // Inputs from 6 latent factors plus a little noise: strongly correlated columns, as neighbouring taps are.
        let mixing = (0..<(6 * n)).map { _ in Double.random(in: -1...1, using: &g) }
        var h = [Double](repeating: 0, count: n * n)
        for _ in 0..<samples {
            let z = (0..<6).map { _ in Double.random(in: -1...1, using: &g) }
            let x = (0..<n).map { c in (0..<6).reduce(0.0) { $0 + z[$1] * mixing[$1 * n + c] } + 0.05 * Double.random(in: -1...1, using: &g) }
            for i in 0..<n { for j in 0..<n { h[i * n + j] += x[i] * x[j] } }
        }
        let w = Self.random(rows * n, &g)
        // A coarse grid (7 steps each side) so that rounding matters.
        let scales = (0..<rows).map { r in (0..<n).map { abs(w[r * n + $0]) }.max()! / 7 }
        let nearest = (0..<(rows * n)).map { Int8((w[$0] / scales[$0 / n]).rounded(.toNearestOrEven)) }
        var h1 = h, h2 = h
        let q = try #require(GPTQ.integers(weights: w, rows: rows, scales: scales, hessian: &h1, damp: 0.01, parallel: Self.twoParts))
        #expect(q.allSatisfy { (-127...127).contains($0) })
        let e0 = Self.outputError(w, nearest, scales, rows: rows, h), e1 = Self.outputError(w, q, scales, rows: rows, h)
        #expect(e1 < 0.5 * e0, "GPTQ output error \(e1), round to nearest \(e0)")
        // Row by row the same with one part and with two (rows are independent).
        #expect(GPTQ.integers(weights: w, rows: rows, scales: scales, hessian: &h2, damp: 0.01) == q)
    }

    @Test func uncorrelatedInputsGiveRoundToNearestAndDeadInputsGiveZero() throws {
        var g = SystemRandomNumberGenerator()
        let rows = 5, n = 23
        let w = Self.random(rows * n, &g)
        let (nearest, scales) = WeightQuantizer.quantize(w, rows: rows)
        var h = [Double](repeating: 0, count: n * n)
        for i in 0..<n { h[i * n + i] = Double.random(in: 0.5...2, using: &g) }
        h[3 * n + 3] = 0  // input 3 never carried a signal
        let q = try #require(GPTQ.integers(weights: w, rows: rows, scales: scales, hessian: &h))
        for r in 0..<rows {
            for c in 0..<n { #expect(q[r * n + c] == (c == 3 ? 0 : nearest[r * n + c])) }
        }
    }
}

@Suite struct WeightGridTests {
    /// A channel whose weights are negligible beside its bias (BatchNorm-folded, nearly dead) keeps its bias:
    /// its grid widens to put the bias at half the accumulator's limit, instead of the bias being clamped to
    /// a fraction of itself (12-bit inputs make the units 16 times smaller, which pushed one such channel of the
    /// bundled model past the limit). Other channels keep max |w| / 127 and, when given, their integers.
    @Test func biasBeyondTheAccumulatorWidensOnlyItsChannelsGrid() {
        let w: [Float] = [0.5, -0.25, 0.125, 0.1] + [1e-9, -2e-9, 0, 1e-9]
        let p = ConvParameters(outChannels: 2, inChannels: 4, kernel: 1, stride: 1, padding: 0, weights: w, bias: [0.1, 0.5])
        let inputScale: Float = 1e-3
        for integers in [nil, [127, -64, 32, 25, 1, -2, 0, 1] as [Int8]] {
            let q = WeightQuantizer.conv(p, inputScale: inputScale, integers: integers)
            #expect(q.weightScales[0] == 0.5 / 127)
            #expect(Array(q.weights[0..<4]) == (integers.map { Array($0[0..<4]) } ?? [127, -64, 32, 25]))
            #expect(q.weights[4...].allSatisfy { $0 == 0 })
            #expect(q.bias.allSatisfy { Double(abs($0)) <= WeightQuantizer.biasLimit / 2 * (1 + 1e-6) })  // (the scale is a Float)
            let restored = Double(q.bias[1]) * Double(inputScale) * Double(q.weightScales[1])
            #expect(abs(restored - 0.5) < 1e-6, "channel 1's bias comes back as \(restored)")
        }
    }
}

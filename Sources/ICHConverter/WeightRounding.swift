import Foundation
import ICHEngine
import ICHKernels
import ICHModel

/// How float weights become int8 integers on their per-output-channel grid (the grid, scale = max|w| / 127, is
/// the same for both).
public enum WeightRounding: String, CaseIterable, Codable, Sendable {
    /// Each weight to its nearest step, on its own.
    case nearest
    /// GPTQ (Frantar et al., 2022): column by column, each column's rounding error is spread over the columns
    /// not yet rounded through the inverse of H = sum x x^T over the layer's input patches on calibration
    /// slices, which minimises the layer's own output error there. Measured on `make verify`'s random-weight
    /// fastai network (bench/quant_ablation.py, docs/converting.md): the body weights' own error, as the
    /// largest probability difference with activations exact, 0.0280 -> 0.0143.
    case gptq
}

/// GPTQ on one layer's weight matrix (rows = output channels, columns = inputs as the patches x order them).
public enum GPTQ {
    /// The dampening added to H's diagonal, as a fraction of its mean: keeps H invertible when calibration saw
    /// fewer patches than the layer has inputs (layer4: 64 pixels a slice against 4608 inputs) and bounds how
    /// far one column's error is pushed onto the others.
    public static let defaultDamp = 0.01

    /// Columns rounded together before the rest of the matrix is updated (the update is then one pass over it).
    static let block = 128

    /// The integers (-127...127) for `weights` (rows x columns, row-major) on the grid `scales` (one per row),
    /// given `hessian` = sum x x^T (columns x columns, row-major), which it overwrites (at n = 4608 it is
    /// 170 MB: the whole solve works in that one matrix). Columns H never saw a signal on (zero diagonal) get
    /// weight 0: those inputs are always zero on calibration data. nil if H is not positive definite even
    /// after dampening (it then cannot come from real inputs).
    public static func integers(weights: [Float], rows: Int, scales: [Float], hessian h: inout [Double],
                                damp: Double = defaultDamp, parallel: Parallel = .serial) -> [Int8]? {
        let n = weights.count / rows
        precondition(n * rows == weights.count && h.count == n * n && scales.count == rows)
        var dead = [Bool](repeating: false, count: n)
        var meanDiagonal = 0.0
        for c in 0..<n {
            dead[c] = !(h[c * n + c] > 0)
            if dead[c] { h[c * n + c] = 1 }
            meanDiagonal += h[c * n + c] / Double(n)
        }
        for c in 0..<n { h[c * n + c] += damp * meanDiagonal }
        guard inverseCholeskyUpper(&h, n: n, parallel: parallel) else { return nil }
        let u = h

        var wt = [Double](repeating: 0, count: n * rows)  // transposed: column c's weights contiguous
        for r in 0..<rows {
            for c in 0..<n where !dead[c] { wt[c * rows + r] = Double(weights[r * n + c]) }
        }
        var q = [Int8](repeating: 0, count: weights.count)
        var errors = [Double](repeating: 0, count: block * rows)
        let s = scales.map(Double.init)
        // Every output channel (row) is rounded independently of the others: the rows are split over `parallel`,
        // each part working on its own range of every column.
        wt.withUnsafeMutableBufferPointer { wt in
            errors.withUnsafeMutableBufferPointer { errors in
                q.withUnsafeMutableBufferPointer { q in
                    u.withUnsafeBufferPointer { u in
                        let (w, e, q, u) = (wt.baseAddress!, errors.baseAddress!, q.baseAddress!, u.baseAddress!)
                        parallel(rows) { part in
                            let r0 = part.lowerBound, count = part.count
                            var i1 = 0
                            while i1 < n {
                                let i2 = min(n, i1 + block)
                                for i in i1..<i2 {
                                    let column = w + i * rows + r0, err = e + (i - i1) * rows + r0
                                    let d = u[i * n + i]
                                    for r in 0..<count {
                                        let v = min(max((column[r] / s[r0 + r]).rounded(.toNearestOrEven), -127), 127)
                                        q[(r0 + r) * n + i] = Int8(v)
                                        err[r] = (column[r] - v * s[r0 + r]) / d
                                    }
                                    for j in (i + 1)..<max(i + 1, i2) { axpy(-u[i * n + j], err, w + j * rows + r0, count) }
                                }
                                for j in i2..<n {
                                    let target = w + j * rows + r0
                                    for i in i1..<i2 { axpy(-u[i * n + j], e + (i - i1) * rows + r0, target, count) }
                                }
                                i1 = i2
                            }
                        }
                    }
                }
            }
        }
        return q
    }

    /// y += a x over n values (a loop the vectoriser takes as it is: no reduction).
    @inline(__always)
    static func axpy(_ a: Double, _ x: UnsafePointer<Double>, _ y: UnsafeMutablePointer<Double>, _ n: Int) {
        for k in 0..<n { y[k] += a * x[k] }
    }

    /// sum a[k] b[k] over n values, in four SIMD4 lanes (a plain reduction loop would stay scalar: floating-point
    /// sums are not reassociated without fast-math).
    @inline(__always)
    static func dot(_ a: UnsafePointer<Double>, _ b: UnsafePointer<Double>, _ n: Int) -> Double {
        var s0 = SIMD4<Double>(), s1 = s0, s2 = s0, s3 = s0
        var k = 0
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
        while k + 16 <= n {
            s0.addProduct(ra.loadUnaligned(fromByteOffset: 8 * k, as: SIMD4<Double>.self), rb.loadUnaligned(fromByteOffset: 8 * k, as: SIMD4<Double>.self))
            s1.addProduct(ra.loadUnaligned(fromByteOffset: 8 * (k + 4), as: SIMD4<Double>.self), rb.loadUnaligned(fromByteOffset: 8 * (k + 4), as: SIMD4<Double>.self))
            s2.addProduct(ra.loadUnaligned(fromByteOffset: 8 * (k + 8), as: SIMD4<Double>.self), rb.loadUnaligned(fromByteOffset: 8 * (k + 8), as: SIMD4<Double>.self))
            s3.addProduct(ra.loadUnaligned(fromByteOffset: 8 * (k + 12), as: SIMD4<Double>.self), rb.loadUnaligned(fromByteOffset: 8 * (k + 12), as: SIMD4<Double>.self))
            k += 16
        }
        var total = ((s0 + s1) + (s2 + s3)).sum()
        while k < n {
            total += a[k] * b[k]
            k += 1
        }
        return total
    }

    /// Replaces `a` (H) by the upper-triangular U with positive diagonal and U^T U = H^-1 (what GPTQ's column
    /// loop reads); false if H is not positive definite (`a` is then garbage). With J the reversal,
    /// J H J = M M^T (Cholesky, M lower) gives H = R R^T with R = J M J upper, so H^-1 = (R^-1)^T R^-1 and U = R^-1 = J M^-1 J: one Cholesky and one triangular
    /// inverse, both over contiguous rows.
    ///
    /// Both run in blocks of `rowBlock` rows: a block's rows take their entries left of the block from every
    /// earlier row, each earlier row read once for the whole block (split over `parallel`), so that the matrix
    /// (170 MB at n = 4608) streams from memory n / rowBlock times instead of n times.
    static func inverseCholeskyUpper(_ a: inout [Double], n: Int, parallel: Parallel = .serial) -> Bool {
        let rowBlock = 16
        /// J A J of a square matrix: A turned half way round, in place.
        func halfTurn() { for k in 0..<(n * n / 2) { a.swapAt(k, n * n - 1 - k) } }
        // J H J; its Cholesky factor M replaces its lower triangle.
        halfTurn()
        var rows = [Double](repeating: 0, count: rowBlock * n)  // a block's rows of X while M's are still read
        let positive: Bool = a.withUnsafeMutableBufferPointer { a in
            rows.withUnsafeMutableBufferPointer { t in
                let base = a.baseAddress!, tb = t.baseAddress!
                var i0 = 0
                while i0 < n {
                    let i1 = min(n, i0 + rowBlock)
                    parallel(i1 - i0) { part in
                        for j in 0..<i0 {
                            let rj = base + j * n, d = rj[j]
                            for i in part {
                                let ri = base + (i0 + i) * n
                                ri[j] = (ri[j] - dot(ri, rj, j)) / d
                            }
                        }
                    }
                    for i in i0..<i1 {
                        let ri = base + i * n
                        for j in i0...i {
                            let v = ri[j] - dot(ri, base + j * n, j)
                            if i == j {
                                guard v > 0, v.isFinite else { return false }
                                ri[i] = v.squareRoot()
                            } else {
                                ri[j] = v / base[j * n + j]
                            }
                        }
                    }
                    i0 = i1
                }
                // X = M^-1, row by row: X[i] = (e_i - sum_{k<i} M[i][k] X[k]) / M[i][i] (X[k] is zero past k).
                // Rows of X replace rows of M once a block is done (its own rows read M's until then).
                i0 = 0
                while i0 < n {
                    let i1 = min(n, i0 + rowBlock)
                    for k in 0..<((i1 - i0) * n) { tb[k] = 0 }
                    parallel(i1 - i0) { part in
                        for k in 0..<i0 {
                            for i in part { axpy(-base[(i0 + i) * n + k], base + k * n, tb + i * n, k + 1) }
                        }
                    }
                    for i in i0..<i1 {
                        let row = tb + (i - i0) * n
                        for k in i0..<i { axpy(-base[i * n + k], base + k * n, row, k + 1) }
                        row[i] += 1
                        let d = 1 / base[i * n + i]
                        for j in 0...i { row[j] *= d }
                        (base + i * n).update(from: row, count: n)
                    }
                    i0 = i1
                }
                return true
            }
        }
        guard positive else { return false }
        // U = J X J.
        halfTurn()
        return true
    }
}

/// GPTQ's statistics for every int8 layer of a network: H = sum x x^T over the layer's input patches, from the
/// float network's activations on calibration slices.
enum LayerHessians {
    /// An int8 layer: its model-file name, the activation it reads (as the float executor names it) and its
    /// geometry (fc as a 1 x 1 convolution of the pooled features).
    struct Layer {
        var name: String
        var input: String
        var conv: ConvParameters
    }

    static func layers(_ p: ResNet18Parameters) -> [Layer] {
        var out = [Layer(name: "stem", input: "input", conv: p.stem)]
        var previous = "maxpool"
        for (i, b) in p.blocks.enumerated() {
            let name = ResNet18Parameters.blockNames[i]
            out.append(Layer(name: "\(name).conv1", input: previous, conv: b.conv1))
            out.append(Layer(name: "\(name).conv2", input: "\(name).conv1", conv: b.conv2))
            if let d = b.downsample { out.append(Layer(name: "\(name).downsample", input: previous, conv: d)) }
            previous = name
        }
        if case .torchvision(let fc) = p.head {
            out.append(Layer(name: "fc", input: "pool", conv: ConvParameters(
                outChannels: fc.outFeatures, inChannels: fc.inFeatures, kernel: 1, stride: 1, padding: 0,
                weights: fc.weights, bias: fc.bias)))
        }
        return out
    }

    /// Layers with more inputs than this have their H built one at a time after the float pass, from their input
    /// maps kept meanwhile (small: layer3 and layer4 maps); the others accumulate H slice by slice. Either way at
    /// most the small H's plus one large one (up to 4608^2 doubles, 170 MB) are in memory.
    static let streamedDepth = 1152

    /// GPTQ integers for every int8 layer; the float network runs each calibration slice once.
    static func integers(_ p: ResNet18Parameters, calibration: [FeatureMap], damp: Double, threads: Int,
                         log: (String) -> Void) throws(ConversionError) -> [String: [Int8]] {
        let all = layers(p)
        let pool = WorkerPool(threads: threads)
        let parallel = pool.kernelParallel
        var streamed: [String: [Double]] = [:]
        var kept: [String: [FeatureMap]] = [:]
        let keptInputs = Set(all.filter { depth($0) > streamedDepth }.map(\.input))
        let float = FloatResNet18(p)
        let clock = ContinuousClock(), start = clock.now
        for input in calibration {
            var maps: [String: FeatureMap] = [:]
            _ = float.run(input) { name, map in maps[name] = map }
            for layer in all where depth(layer) <= streamedDepth {
                accumulate(layer, maps[layer.input]!, into: &streamed[layer.name, default: [Double](repeating: 0, count: depth(layer) * depth(layer))],
                           parallel: parallel)
            }
            for name in keptInputs { kept[name, default: []].append(maps[name]!) }
        }
        let streamedTime = clock.now - start
        var out: [String: [Int8]] = [:]
        for layer in all {
            let n = depth(layer)
            var h: [Double]
            if let s = streamed.removeValue(forKey: layer.name) {
                h = s
            } else {
                h = [Double](repeating: 0, count: n * n)
                for map in kept[layer.input]! { accumulate(layer, map, into: &h, parallel: parallel) }
            }
            h.withUnsafeMutableBufferPointer { FloatConvGEMM.mirrorGram($0.baseAddress!, depth: n) }
            let scales = WeightQuantizer.scales(layer.conv.weights, rows: layer.conv.outChannels)
            guard let q = GPTQ.integers(weights: layer.conv.weights, rows: layer.conv.outChannels, scales: scales,
                                        hessian: &h, damp: damp, parallel: parallel) else {
                throw ConversionError("GPTQ: \(layer.name)'s input statistics are not positive definite (give more calibration slices, or --weight-rounding nearest)")
            }
            out[layer.name] = q
        }
        let seconds = { (d: Duration) in String(format: "%.0f s", Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18) }
        log("  weight rounding: GPTQ on \(calibration.count) slices, \(out.count) layers (float pass and small layers' statistics "
            + "\(seconds(streamedTime)), the rest \(seconds(clock.now - start - streamedTime)))")
        return out
    }

    static func depth(_ l: Layer) -> Int { l.conv.inChannels * l.conv.kernel * l.conv.kernel }

    static func accumulate(_ layer: Layer, _ map: FeatureMap, into h: inout [Double], parallel: Parallel) {
        let c = layer.conv
        let shape = ReferenceKernels.ConvShape(inChannels: c.inChannels, inHeight: map.height, inWidth: map.width,
                                               outChannels: c.outChannels, kernel: c.kernel, stride: c.stride, padding: c.padding)
        var scratch = [Float](repeating: 0, count: FloatConvGEMM.gramScratchCount(shape))
        map.values.withUnsafeBufferPointer { x in
            h.withUnsafeMutableBufferPointer { h in
                scratch.withUnsafeMutableBufferPointer { s in
                    FloatConvGEMM.accumulateGram(shape, input: x.baseAddress!, into: h.baseAddress!, scratch: s.baseAddress!, parallel: parallel)
                }
            }
        }
    }
}

// float32 convolution as im2col + a register-tiled GEMM (4 output channels x 16 pixels, fused multiply-adds on
// SIMD8<Float>), for the float reference executor. Summation order differs from a direct convolution, so the
// results agree to rounding (checked against the direct loops in the tests and against ONNX Runtime in
// `make test`), not bit for bit; the int8 kernels are the exact ones.

public enum FloatConvGEMM {
    static let pixelTile = 16
    static let channelTile = 4

    /// Floats of scratch `conv` needs for this shape.
    public static func scratchCount(_ s: ReferenceKernels.ConvShape) -> Int {
        let pixels = s.outHeight * s.outWidth
        return (pixels + pixelTile - 1) / pixelTile * pixelTile * s.inChannels * s.kernel * s.kernel
    }

    /// output (CHW) = relu?(bias + conv(input, weights OIHW) + residual?).
    public static func conv(_ s: ReferenceKernels.ConvShape, input: UnsafePointer<Float>, weights: UnsafePointer<Float>,
                            bias: UnsafePointer<Float>, residual: UnsafePointer<Float>?, relu: Bool,
                            output: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let pixels = s.outHeight * s.outWidth, depth = s.inChannels * s.kernel * s.kernel
        let tiles = (pixels + pixelTile - 1) / pixelTile
        im2col(s, input: input, depth: depth, out: scratch)
        for t in 0..<tiles {
            let columns = UnsafePointer(scratch) + t * depth * pixelTile
            var o = 0
            while o < s.outChannels {
                tile(depth: depth, weights: weights, firstChannel: o, channels: s.outChannels, columns: columns, bias: bias,
                     residual: residual, relu: relu, output: output, pixel: t * pixelTile, pixels: pixels)
                o += channelTile
            }
        }
    }

    /// Tile-major columns: out[(t x depth + k) x 16 + q] = x[k][16t + q]; padding taps and pixels past the end are 0.
    static func im2col(_ s: ReferenceKernels.ConvShape, input: UnsafePointer<Float>, depth: Int, out: UnsafeMutablePointer<Float>) {
        let ow = s.outWidth, pixels = s.outHeight * ow, k = s.kernel
        let tiles = (pixels + pixelTile - 1) / pixelTile
        for t in 0..<tiles {
            for q in 0..<pixelTile {
                let p = t * pixelTile + q
                let oy = p / ow, ox = p % ow
                var kk = 0
                for i in 0..<s.inChannels {
                    let plane = input + i * s.inHeight * s.inWidth
                    for ky in 0..<k {
                        let iy = oy * s.stride + ky - s.padding
                        for kx in 0..<k {
                            let ix = ox * s.stride + kx - s.padding
                            let inside = p < pixels && iy >= 0 && iy < s.inHeight && ix >= 0 && ix < s.inWidth
                            out[(t * depth + kk) * pixelTile + q] = inside ? plane[iy * s.inWidth + ix] : 0
                            kk += 1
                        }
                    }
                }
            }
        }
    }

    @inline(__always)
    static func tile(depth: Int, weights: UnsafePointer<Float>, firstChannel o: Int, channels: Int, columns: UnsafePointer<Float>,
                     bias: UnsafePointer<Float>, residual: UnsafePointer<Float>?, relu: Bool,
                     output: UnsafeMutablePointer<Float>, pixel: Int, pixels: Int) {
        // Rows past the last channel repeat the last one (computed, never stored).
        let w0 = weights + o * depth, w1 = weights + min(o + 1, channels - 1) * depth
        let w2 = weights + min(o + 2, channels - 1) * depth, w3 = weights + min(o + 3, channels - 1) * depth
        var a00 = SIMD8<Float>(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00
        var c = columns
        for k in 0..<depth {
            let x0 = UnsafeRawPointer(c).loadUnaligned(as: SIMD8<Float>.self)
            let x1 = UnsafeRawPointer(c + 8).loadUnaligned(as: SIMD8<Float>.self)
            let b0 = SIMD8<Float>(repeating: w0[k]), b1 = SIMD8<Float>(repeating: w1[k])
            let b2 = SIMD8<Float>(repeating: w2[k]), b3 = SIMD8<Float>(repeating: w3[k])
            a00.addProduct(x0, b0); a01.addProduct(x1, b0)
            a10.addProduct(x0, b1); a11.addProduct(x1, b1)
            a20.addProduct(x0, b2); a21.addProduct(x1, b2)
            a30.addProduct(x0, b3); a31.addProduct(x1, b3)
            c += 16
        }
        @inline(__always) func store(_ lo: SIMD8<Float>, _ hi: SIMD8<Float>, _ r: Int) {
            guard o + r < channels else { return }
            let out = output + (o + r) * pixels + pixel
            let res = residual.map { $0 + (o + r) * pixels + pixel }
            for j in 0..<min(pixelTile, pixels - pixel) {
                var v = (j < 8 ? lo[j] : hi[j - 8]) + bias[o + r]
                if let res { v += res[j] }
                out[j] = relu ? max(v, 0) : v
            }
        }
        store(a00, a01, 0)
        store(a10, a11, 1)
        store(a20, a21, 2)
        store(a30, a31, 3)
    }
}

extension FloatConvGEMM {
    /// Floats of scratch `accumulateGram` needs (the im2col columns of one input).
    public static func gramScratchCount(_ s: ReferenceKernels.ConvShape) -> Int { scratchCount(s) }

    /// h (depth x depth, row-major, depth = inChannels x kernel x kernel) += sum over the output pixels of x x^T,
    /// x = the pixel's input patch in the order the weights' columns see it (channel, ky, kx; padding taps 0).
    /// The converter's GPTQ weight rounding needs it (the curvature of a layer's output error). Only the entries
    /// h[i][j] with j >= 4 x (i / 4) are written; `mirrorGram` fills the rest once all inputs are in.
    ///
    /// Why this shape: the im2col columns are tile-major (16 pixels per k), so a row pair of h reads two short
    /// rows of a chunk of tiles (kept in L1) against every later row of the chunk (at most 256 KiB, in L2);
    /// 2 x 4 entries x 16 pixels is 16 fused multiply-adds per 12 loads. Sums run in float within a chunk
    /// (at most 256 products) and in double across chunks and calls. Row pairs are split over `parallel`,
    /// pair p with pair P-1-p, so that every part gets the same share of the triangle.
    public static func accumulateGram(_ s: ReferenceKernels.ConvShape, input: UnsafePointer<Float>, into h: UnsafeMutablePointer<Double>,
                                      scratch: UnsafeMutablePointer<Float>, parallel: Parallel = .serial) {
        let depth = s.inChannels * s.kernel * s.kernel
        let tiles = (s.outHeight * s.outWidth + pixelTile - 1) / pixelTile
        im2col(s, input: input, depth: depth, out: scratch)
        let chunk = max(1, min(16, 4096 / depth))
        let pairs = (depth + 1) / 2
        let columns = UnsafePointer(scratch)
        parallel((pairs + 1) / 2) { items in
            for item in items {
                let other = pairs - 1 - item  // the same pair when `pairs` is odd and this is the middle one
                gramRows(2 * item, depth: depth, tiles: tiles, chunk: chunk, columns: columns, h: h)
                if other != item { gramRows(2 * other, depth: depth, tiles: tiles, chunk: chunk, columns: columns, h: h) }
            }
        }
    }

    /// Rows i and i + 1 of h (i + 1 may be past the end: computed as a copy of row i, never stored).
    @inline(__always)
    static func gramRows(_ i: Int, depth: Int, tiles: Int, chunk: Int, columns: UnsafePointer<Float>, h: UnsafeMutablePointer<Double>) {
        let i1 = min(i + 1, depth - 1)
        var t0 = 0
        while t0 < tiles {
            let t1 = min(tiles, t0 + chunk)
            var j = i & ~3
            while j < depth {
                let j1 = min(j + 1, depth - 1), j2 = min(j + 2, depth - 1), j3 = min(j + 3, depth - 1)
                var a00 = SIMD8<Float>(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00
                for t in t0..<t1 {
                    let base = UnsafeRawPointer(columns + t * depth * pixelTile)
                    for half in 0..<2 {
                        @inline(__always) func row(_ k: Int) -> SIMD8<Float> {
                            base.loadUnaligned(fromByteOffset: (k * pixelTile + 8 * half) * 4, as: SIMD8<Float>.self)
                        }
                        let x0 = row(i), x1 = row(i1)
                        let y0 = row(j), y1 = row(j1), y2 = row(j2), y3 = row(j3)
                        a00.addProduct(x0, y0); a01.addProduct(x0, y1); a02.addProduct(x0, y2); a03.addProduct(x0, y3)
                        a10.addProduct(x1, y0); a11.addProduct(x1, y1); a12.addProduct(x1, y2); a13.addProduct(x1, y3)
                    }
                }
                let live = min(4, depth - j)
                let r0 = h + i * depth + j
                let sums0 = SIMD4(a00.sum(), a01.sum(), a02.sum(), a03.sum())
                for c in 0..<live { r0[c] += Double(sums0[c]) }
                if i + 1 < depth {
                    let r1 = h + (i + 1) * depth + j
                    let sums1 = SIMD4(a10.sum(), a11.sum(), a12.sum(), a13.sum())
                    for c in 0..<live { r1[c] += Double(sums1[c]) }
                }
                j += 4
            }
            t0 = t1
        }
    }

    /// Completes an `accumulateGram` result: h[i][j] = h[j][i] for j < 4 x (i / 4).
    public static func mirrorGram(_ h: UnsafeMutablePointer<Double>, depth: Int) {
        for i in 0..<depth {
            for j in 0..<(i & ~3) { h[i * depth + j] = h[j * depth + i] }
        }
    }
}

// u8 x s8 convolution as im2col + GEMM on int16 pair products, exact int32 accumulation.
//
// Why this shape: x86 without VNNI multiplies int8 fastest as int16 pairs (vpmaddwd: a0*b0 + a1*b1 into one
// int32 lane, exact for |a| <= 255 and |b| <= 127), and LLVM emits vpmaddwd from Swift only for the pattern
// "widen to Int32 lanes, multiply, evenHalf &+ oddHalf" (../shared/KNOWHOW.md). So K is consumed in pairs:
// activations are im2col'ed pair-interleaved (x[k][p], x[k+1][p] adjacent) and tile-major (16 pixels x all K
// contiguous), weights packed as int16 pairs per output channel (one vpbroadcastd each), and a 4-channel x
// 16-pixel tile keeps 8 SIMD8<Int32> accumulators in registers. Large layers keep their weights as int8 (half
// the memory, `PackedConvWeights.wideLimit`) and widen one channel tile at a time into a small buffer, reused
// across the pixel tiles of a parallel part (widening in the kernel, vpbroadcastw + vpmovsxbw per pair, was
// about 10% slower).
//
// Padding taps read the input zero point, so acc = bias + sum x*w - zero * sum w, which equals the reference
// bias + sum (x - zero) * w for every output (the correction is folded into the accumulators' start values).

/// Which inner kernel a convolution runs; both are exact and give identical accumulators. Both compile
/// everywhere (the tests run both here); `native` picks the one that suits the target's instructions.
public enum ConvKernel: String, Sendable, CaseIterable {
    /// int16 pair products (`vpmaddwd` on x86): 4 output channels x 16 pixels per register tile.
    case pairs
    /// Dot products reduced over K in the shape LLVM turns into `sdot` on ARMv8.2+dotprod (Raspberry Pi 5) and
    /// into smull + saddw on plain armv8-a (Raspberry Pi 4): 2 output channels x 3 pixels, K contiguous (`ConvDot`).
    case dot

    public static var native: ConvKernel {
        #if arch(arm64)
        .dot
        #else
        .pairs
        #endif
    }
}

/// Weights of one convolution, packed once at model load for one `ConvKernel`.
public struct PackedConvWeights: Sendable {
    public static let channelTile = 4
    public static let pixelTile = 16

    public let kind: ConvKernel
    public let outChannels: Int
    public let inChannels: Int
    public let kernel: Int
    /// pairs: K pairs (K = inChannels x kernel x kernel rounded up to even; the extra tap has weight 0).
    /// dot: K rounded up to a multiple of 32 (`ConvDot.depthAlignment`).
    public let depth: Int
    /// pairs: for each tile of 4 output channels, for each K pair, 4 x (w[k], w[k+1]): [tile][pair][4][2].
    /// dot: for each tile of 2 output channels (`ConvDot.channelTile`), each channel's K weights in HWC order
    /// (k = (ky x kernel + kx) x inChannels + c), zero-padded to `depth`: [tile][lane][depth].
    /// int8, except for `wide` pairs packing, which fills `packedWide` with the same layout in int16.
    let packed: [Int8]
    let packedWide: [Int16]
    /// pairs only: weights stored as int16 (faster) instead of int8 (half the memory).
    public let wide: Bool
    /// dot only: products summed in int16 pairs before int32 (`ConvDot.dot2x3i16`, the kernel for ARM without
    /// `sdot`), which is exact because no weight is -128. Default: `ConvDot.prefersInt16Products` and the weights
    /// allow it; `false` is always possible, `true` only where the weights allow it.
    public let int16Products: Bool

    /// Convolutions with at most this many weights are packed wide by default: in ResNet18 the stem, layer1,
    /// layer2, the downsamples and layer3's first convolution (0.8 million weights together, 0.8 MB more than
    /// int8); layer3's other three and layer4's 3x3 convolutions (10 million) stay int8. Measured on the shipped
    /// model, one thread (bench/README.md): all int16 40 ms, all int8 44 ms; with a real slice as input, limit
    /// 2^20 40 ms and 48.6 MiB peak RSS, this limit 41.5 ms and 47 MiB (target 48).
    public static let wideLimit = 1 << 19
    /// Per output channel, sum of its weights (for the zero-point correction).
    public let weightSums: [Int32]

    public var pairs: Int { depth }

    /// `weights` OIHW as in `QuantizedConv`.
    /// `wide`: int16 storage for the pairs kernel (default: when the layer has at most `wideLimit` weights).
    public init(weights: [Int8], outChannels: Int, inChannels: Int, kernel: Int, kind: ConvKernel = .native, wide: Bool? = nil,
                int16Products: Bool? = nil) {
        self.kind = kind
        let allowed = kind == .dot && !weights.contains(Int8.min)
        precondition(int16Products != true || allowed, "int16 products need dot packing and no weight -128")
        self.int16Products = allowed && (int16Products ?? ConvDot.prefersInt16Products)
        self.wide = kind == .pairs && (wide ?? (weights.count <= Self.wideLimit))
        self.outChannels = outChannels
        self.inChannels = inChannels
        self.kernel = kernel
        let k = inChannels * kernel * kernel
        let mt = kind == .dot ? ConvDot.channelTile : Self.channelTile
        let tiles = (outChannels + mt - 1) / mt
        switch kind {
        case .pairs: depth = (k + 1) / 2
        case .dot: depth = (k + ConvDot.depthAlignment - 1) / ConvDot.depthAlignment * ConvDot.depthAlignment
        }
        let perTile = kind == .pairs ? depth * Self.channelTile * 2 : depth * mt
        var packed = [Int8](repeating: 0, count: tiles * perTile)
        var sums = [Int32](repeating: 0, count: outChannels)
        for o in 0..<outChannels {
            let tile = o / mt, lane = o % mt
            for j in 0..<k {
                let w = weights[o * k + j]
                sums[o] += Int32(w)
                switch kind {
                case .pairs: packed[((tile * depth + j / 2) * Self.channelTile + lane) * 2 + (j & 1)] = w
                case .dot:
                    // OIHW index j = (c x kernel + ky) x kernel + kx -> HWC index (ky x kernel + kx) x C + c.
                    let c = j / (kernel * kernel), tap = j % (kernel * kernel)
                    packed[(tile * mt + lane) * depth + tap * inChannels + c] = w
                }
            }
        }
        if self.wide {
            packedWide = packed.map(Int16.init)
            self.packed = []
        } else {
            packedWide = []
            self.packed = packed
        }
        weightSums = sums
    }

    /// Bytes of the scratch buffer `ConvGEMM.convAccumulate` needs for this shape (or a band of `rows` output
    /// rows of it) split `parts` ways: everything the kernel uses while it runs, so it allocates nothing.
    public func scratchBytes(_ s: ReferenceKernels.ConvShape, rows: Int? = nil, parts: Int = 1) -> Int {
        ScratchLayout(self, s, rows: rows ?? s.outHeight, parts: parts).bytes
    }
}

/// Where `ConvGEMM.convAccumulate` keeps what it needs in its scratch buffer, each piece 64-byte aligned:
/// im2col columns, the bordered input and its offset tables, the per-channel-tile start values, and one
/// weight-widening buffer per parallel part.
struct ScratchLayout {
    var columns = 0, bordered = 0, tables = 0, starts = 0, widening = 0, wideningStride = 0, bytes = 0
    /// dot: bytes of each parallel part's im2col block.
    var blockStride = 0

    init(_ w: PackedConvWeights, _ s: ReferenceKernels.ConvShape, rows: Int, parts: Int) {
        var end = 0
        func take(_ n: Int) -> Int {
            let at = end
            end += (n + 63) / 64 * 64
            return at
        }
        let pixels = rows * s.outWidth, tiles = (s.outChannels + PackedConvWeights.channelTile - 1) / PackedConvWeights.channelTile
        switch w.kind {
        case .pairs:
            let padded = (pixels + PackedConvWeights.pixelTile - 1) / PackedConvWeights.pixelTile * PackedConvWeights.pixelTile
            columns = take(padded * w.depth * 2)
            bordered = take(ConvGEMM.borderedBytes(s, rows: rows, split: true))
            tables = take(ConvGEMM.borderedApplies(s) ? (2 * w.depth + padded / 8) * 4 : 0)
            starts = take(tiles * 16)
            wideningStride = w.wide ? 0 : (w.depth * PackedConvWeights.channelTile * 2 * 2 + 63) / 64 * 64
            widening = take(parts * wideningStride)
        case .dot:
            let block = ConvDot.blockPixels(depth: w.depth, outChannels: s.outChannels, pixels: pixels, parts: parts)
            blockStride = (block * w.depth + ConvDot.slack + 63) / 64 * 64
            columns = take(parts * blockStride)
            bordered = take(ConvDot.borderedBytes(s, rows: rows))
            starts = take(tiles * 16)
        }
        bytes = end
    }
}

public enum ConvGEMM {
    /// Accumulators exactly as `ReferenceKernels.convAccumulate` computes them (CHW in, CHW out).
    /// `scratch` holds at least `w.scratchBytes(s, rows:, parts: parallel.count)` bytes.
    /// `parallel` splits pixel tiles over threads: every tile's result is the same whoever computes it.
    /// `finish(pixels)` runs on the same thread right after the accumulators of that pixel range are complete
    /// (the requantisation), so the work needs one parallel region, not two. (Closure parameters here are
    /// never optional: an optional closure escapes, and its context would be allocated on every call.)
    /// `rows`: only this band of output rows; `acc`, `scratch` and the pixels `finish` gets are then the band's
    /// (pixel 0 is the band's first), so a layer with large accumulators can be run band by band.
    public static func convAccumulate(_ s: ReferenceKernels.ConvShape, rows: Range<Int>? = nil, input: UnsafePointer<UInt8>,
                                      inZero: Int32, weights w: PackedConvWeights, bias: UnsafePointer<Int32>,
                                      acc: UnsafeMutablePointer<Int32>, scratch: UnsafeMutablePointer<UInt8>,
                                      parallel: Parallel = .serial, finish: (Range<Int>) -> Void = { _ in }) {
        let band = rows ?? 0..<s.outHeight
        precondition(band.lowerBound >= 0 && band.upperBound <= s.outHeight)
        let layout = ScratchLayout(w, s, rows: band.count, parts: parallel.count)
        // Start values per tile of 4 output channels: the bias and the zero-point correction (see the top).
        let mt = PackedConvWeights.channelTile, tiles = (s.outChannels + mt - 1) / mt
        let starts = UnsafeMutableRawPointer(scratch + layout.starts)
        let correction = w.kind == .dot ? 128 &- inZero : -inZero
        for tile in 0..<tiles {
            var start = SIMD4<Int32>.zero
            for lane in 0..<mt where tile * mt + lane < s.outChannels {
                let o = tile * mt + lane
                start[lane] = bias[o] &+ correction &* w.weightSums[o]
            }
            starts.storeBytes(of: start, toByteOffset: tile * 16, as: SIMD4<Int32>.self)
        }
        if w.kind == .dot {
            // Bordered HWC rows with the top bit flipped (the dot kernel's signed activations).
            ConvDot.border(s, rows: band, input: input, zero: UInt8(truncatingIfNeeded: inZero), out: scratch + layout.bordered,
                           parallel: parallel)
            ConvDot.convAccumulate(s, rows: band, weights: w, starts: UnsafeRawPointer(starts).assumingMemoryBound(to: Int32.self),
                                   acc: acc,
                                   bordered: UnsafeRawPointer(scratch + layout.bordered).assumingMemoryBound(to: Int8.self),
                                   columns: UnsafeMutableRawPointer(scratch + layout.columns).assumingMemoryBound(to: Int8.self),
                                   blockStride: layout.blockStride, parallel: parallel, finish: finish)
            return
        }
        let pixels = band.count * s.outWidth
        let nt = PackedConvWeights.pixelTile
        let paddedPixels = (pixels + nt - 1) / nt * nt
        let columns = scratch + layout.columns
        /// The GEMM over all pixel tiles; `prepare(tiles)` fills those tiles' columns first, in the same part.
        func run(prepare: (Range<Int>) -> Void) {
            if w.wide {
                w.packedWide.withUnsafeBufferPointer { packed in
                    gemm(s, pairs: w.pairs, tiles: tiles, weights: packed.baseAddress!, columns: UnsafePointer(columns),
                         starts: UnsafeRawPointer(starts), acc: acc, pixels: pixels, paddedPixels: paddedPixels, parallel: parallel,
                         prepare: prepare, finish: finish)
                }
            } else {
                let widening = UnsafeMutableRawPointer(scratch + layout.widening).assumingMemoryBound(to: Int16.self)
                w.packed.withUnsafeBufferPointer { packed in
                    gemmWidening(s, pairs: w.pairs, tiles: tiles, weights: packed.baseAddress!, columns: UnsafePointer(columns),
                                 starts: UnsafeRawPointer(starts), acc: acc, pixels: pixels, paddedPixels: paddedPixels,
                                 widening: widening, wideningStride: layout.wideningStride / 2, parallel: parallel,
                                 prepare: prepare, finish: finish)
                }
            }
        }
        let zero = UInt8(truncatingIfNeeded: inZero)
        guard borderedApplies(s) else {
            im2colRows(s, rows: band, input: input, zero: zero, pairs: w.pairs, paddedPixels: paddedPixels, out: columns, parallel: parallel)
            return run(prepare: { _ in })
        }
        // Each part gathers its own pixel tiles' columns just before multiplying them (one parallel region less
        // per convolution, and the columns are still in cache).
        let bordered = scratch + layout.bordered
        border(s, rows: band, input: input, zero: zero, flip: 0, split: true, out: bordered, parallel: parallel)
        let tables = UnsafeMutableRawPointer(scratch + layout.tables).assumingMemoryBound(to: Int32.self)
        borderedOffsets(s, rows: band, pairs: w.pairs, paddedPixels: paddedPixels, into: tables)
        let tapOffset = UnsafePointer(tables), halfBase = tapOffset + 2 * w.pairs
        run(prepare: { pixelTiles in
            im2colBordered(tiles: pixelTiles, pairs: w.pairs, tapOffset: tapOffset, halfBase: halfBase,
                           bordered: UnsafePointer(bordered), out: columns)
        })
    }

    /// For int8-packed weights: channel tiles outside, and each channel tile's weights widened to int16 once
    /// per parallel part into the part's buffer (at most 4608 pairs x 16 bytes = 72 KiB), then run against the
    /// part's pixel tiles with the int16 kernel: the widening is paid once per part, not once per pixel tile.
    @inline(__always)
    static func gemmWidening(_ s: ReferenceKernels.ConvShape, pairs: Int, tiles: Int, weights: UnsafePointer<Int8>,
                             columns: UnsafePointer<UInt8>, starts: UnsafeRawPointer, acc: UnsafeMutablePointer<Int32>,
                             pixels: Int, paddedPixels: Int, widening: UnsafeMutablePointer<Int16>, wideningStride: Int,
                             parallel: Parallel, prepare: (Range<Int>) -> Void, finish: (Range<Int>) -> Void) {
        let nt = PackedConvWeights.pixelTile, mt = PackedConvWeights.channelTile, perTile = pairs * mt * 2
        parallel.parts(paddedPixels / nt) { part, pixelTiles in
            prepare(pixelTiles)
            let wide = widening + part * wideningStride
            for tile in 0..<tiles {
                let narrow = weights + tile * perTile
                for i in 0..<perTile { wide[i] = Int16(narrow[i]) }
                let start = starts.loadUnaligned(fromByteOffset: tile * 16, as: SIMD4<Int32>.self)
                for t in pixelTiles {
                    let p = t * nt
                    tile4x16(pairs: pairs, weights: UnsafePointer(wide), columns: columns + p * pairs * 2, start: start,
                             acc: acc, channel: tile * mt, channels: s.outChannels, pixel: p, pixels: pixels)
                }
            }
            finish(min(pixels, pixelTiles.lowerBound * nt)..<min(pixels, pixelTiles.upperBound * nt))
        }
    }

    /// Pixel tiles outside, channel tiles inside: one pixel tile's columns (pairs x 32 bytes) stay in L1 while
    /// every channel tile's weights stream past it.
    @inline(__always)
    static func gemm(_ s: ReferenceKernels.ConvShape, pairs: Int, tiles: Int, weights: UnsafePointer<Int16>,
                     columns: UnsafePointer<UInt8>, starts: UnsafeRawPointer, acc: UnsafeMutablePointer<Int32>,
                     pixels: Int, paddedPixels: Int, parallel: Parallel,
                     prepare: (Range<Int>) -> Void, finish: (Range<Int>) -> Void) {
        let nt = PackedConvWeights.pixelTile, mt = PackedConvWeights.channelTile
        parallel(paddedPixels / nt) { pixelTiles in
            prepare(pixelTiles)
            for t in pixelTiles {
                let p = t * nt
                for tile in 0..<tiles {
                    tile4x16(pairs: pairs, weights: weights + tile * pairs * mt * 2, columns: columns + p * pairs * 2,
                             start: starts.loadUnaligned(fromByteOffset: tile * 16, as: SIMD4<Int32>.self), acc: acc,
                             channel: tile * mt, channels: s.outChannels, pixel: p, pixels: pixels)
                }
            }
            finish(min(pixels, pixelTiles.lowerBound * nt)..<min(pixels, pixelTiles.upperBound * nt))
        }
    }

    /// Whether the columns come from a bordered copy of the input (`border`, `im2colBordered`): output rows of
    /// whole 8-pixel halves, stride 1 or 2 (every convolution of ResNet18 at 256 x 256); else `im2colRows`.
    static func borderedApplies(_ s: ReferenceKernels.ConvShape) -> Bool {
        s.outWidth % 8 == 0 && (s.stride == 1 || s.stride == 2)
    }

    /// Bytes of the bordered input a band of `rows` output rows reads (0 where the pairs kernel, `split`, does
    /// not use it).
    static func borderedBytes(_ s: ReferenceKernels.ConvShape, rows: Int, split: Bool) -> Int {
        guard borderedApplies(s) || !split else { return 0 }
        return s.inChannels * ((rows - 1) * s.stride + s.kernel) * (s.inWidth + 2 * s.padding)
    }

    /// A bordered copy of the input rows a band of output rows reads: each plane row has `padding` zero points
    /// on both sides (rows above and below the input are all zero point), every byte xor `flip`; with `split`
    /// (the pairs kernel, stride 2) its even bordered columns come first, then its odd ones, so that a tap's
    /// values for 8 consecutive output pixels of a row are 8 consecutive bytes. Rows and columns no tap reads
    /// (a 1x1 stride-2 kernel's odd ones) are left alone.
    static func border(_ s: ReferenceKernels.ConvShape, rows band: Range<Int>, input: UnsafePointer<UInt8>, zero: UInt8,
                       flip: UInt8, split: Bool, out: UnsafeMutablePointer<UInt8>, parallel: Parallel) {
        let k = s.kernel, st = s.stride, pad = s.padding, padding = zero ^ flip
        let width = s.inWidth + 2 * pad, evens = (width + 1) / 2
        let rowsNeeded = (band.count - 1) * st + k, plane = rowsNeeded * width, firstRow = band.lowerBound * st - pad
        // Split by rows of all planes, not by planes: the stem has only 3.
        parallel(s.inChannels * rowsNeeded) { planeRows in
            for planeRow in planeRows {
                let c = planeRow / rowsNeeded, r = planeRow % rowsNeeded
                guard r % st < k else { continue }
                let dst = out + c * plane + r * width, iy = firstRow + r
                guard iy >= 0 && iy < s.inHeight else {
                    dst.update(repeating: padding, count: width)
                    continue
                }
                let src = input + (c * s.inHeight + iy) * s.inWidth
                if !split || st == 1 {
                    dst.update(repeating: padding, count: pad)
                    for x in 0..<s.inWidth { dst[pad &+ x] = src[x] ^ flip }
                    (dst + pad + s.inWidth).update(repeating: padding, count: pad)
                } else {
                    // Bordered column 2e is input column 2e - pad, 2e + 1 is 2e + 1 - pad: constant-stride
                    // gathers, which LLVM vectorises.
                    let even = ConvGeometry.validOutputs(input: s.inWidth, output: evens, tap: 0, stride: 2, padding: pad)
                    dst.update(repeating: padding, count: even.lowerBound)
                    for e in even { dst[e] = src[2 &* e &- pad] ^ flip }
                    (dst + even.upperBound).update(repeating: padding, count: evens - even.upperBound)
                    guard k > 1 else { continue }
                    let odd = ConvGeometry.validOutputs(input: s.inWidth, output: width / 2, tap: 1, stride: 2, padding: pad)
                    (dst + evens).update(repeating: padding, count: odd.lowerBound)
                    for e in odd { dst[evens &+ e] = src[2 &* e &+ 1 &- pad] ^ flip }
                    (dst + evens + odd.upperBound).update(repeating: padding, count: width / 2 - odd.upperBound)
                }
            }
        }
    }

    /// The offset tables `im2colBordered` reads, into `table` (2 x pairs + paddedPixels / 8 values): each tap's
    /// byte offset in the bordered input, then each 8-pixel half's (a half past the end repeats the last one:
    /// its outputs are never stored).
    static func borderedOffsets(_ s: ReferenceKernels.ConvShape, rows band: Range<Int>, pairs: Int, paddedPixels: Int,
                                into table: UnsafeMutablePointer<Int32>) {
        let k = s.kernel, st = s.stride, ow = s.outWidth, taps = s.inChannels * k * k
        let width = s.inWidth + 2 * s.padding, evens = (width + 1) / 2
        let plane = ((band.count - 1) * st + k) * width, pixels = band.count * ow, halves = paddedPixels / 8
        for t in 0..<(2 * pairs) {
            let tap = t < taps ? t : 0  // the odd K's extra tap has weight 0: any byte will do
            let c = tap / (k * k), ky = tap / k % k, kx = tap % k
            let column = st == 1 ? kx : (kx & 1) * evens + kx / 2
            table[t] = Int32(c * plane + ky * width + column)
        }
        for h in 0..<halves {
            let p = min(h * 8, pixels - 8)
            table[2 * pairs + h] = Int32((p / ow) * st * width + p % ow)
        }
    }

    /// im2col of the pixel tiles `tiles` from the bordered input, tile-major with K pairs interleaved: for
    /// pixel tile t (16 pixels), pair j, pixel q of the tile, out[((t x pairs + j) x 16 + q) x 2 + (k & 1)] =
    /// x[k][16t + q]. A pair of taps for 8 pixels is one 8-byte load each and a byte unpack: no per-pixel bounds
    /// or gathers (copying tap rows byte by byte, as `im2colRows` does, took 16% of the network's time).
    @inline(__always)
    static func im2colBordered(tiles: Range<Int>, pairs: Int, tapOffset: UnsafePointer<Int32>,
                               halfBase: UnsafePointer<Int32>, bordered: UnsafePointer<UInt8>, out: UnsafeMutablePointer<UInt8>) {
        for t in tiles {
            let tile = out + t * pairs * 32
            let base0 = Int(halfBase[2 * t]), base1 = Int(halfBase[2 * t + 1])
            for j in 0..<pairs {
                let a = bordered + Int(tapOffset[2 * j]), b = bordered + Int(tapOffset[2 * j + 1])
                let dst = UnsafeMutableRawPointer(tile + j * 32)
                dst.storeBytes(of: interleave(a + base0, b + base0), as: SIMD16<UInt8>.self)
                dst.storeBytes(of: interleave(a + base1, b + base1), toByteOffset: 16, as: SIMD16<UInt8>.self)
            }
        }
    }

    /// 8 bytes of each tap, interleaved (a0, b0, a1, b1, ...): an element loop LLVM turns into one byte unpack
    /// (lanes passed to a SIMD16 initialiser became a chain of shuffles).
    @inline(__always)
    static func interleave(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>) -> SIMD16<UInt8> {
        let x = UnsafeRawPointer(a).loadUnaligned(as: SIMD8<UInt8>.self), y = UnsafeRawPointer(b).loadUnaligned(as: SIMD8<UInt8>.self)
        var r = SIMD16<UInt8>()
        for i in 0..<8 {
            r[2 &* i] = x[i]
            r[2 &* i &+ 1] = y[i]
        }
        return r
    }

    /// im2col for any output width and stride, in the layout of `im2colBordered`; pixels past the end and
    /// padding taps read the zero point. Pairs are split over `parallel`, each writing its own bytes. Per pair
    /// and output row, both taps' rows are gathered into two short contiguous buffers (a plain copy
    /// for stride 1), then interleaved into the tiles 16 pixels at a time: loops LLVM vectorises. Writing byte
    /// by byte into the interleaved layout instead took 41.9 ms (1 thread) and 22.2 ms (2 threads) for the
    /// whole network against 39.4 and 20.0-20.9 ms (layer1's im2col 1.45 -> 0.87 ms per convolution).
    static func im2colRows(_ s: ReferenceKernels.ConvShape, rows band: Range<Int>, input: UnsafePointer<UInt8>, zero: UInt8,
                            pairs: Int, paddedPixels: Int, out: UnsafeMutablePointer<UInt8>, parallel: Parallel) {
        let ow = s.outWidth, k = s.kernel, taps = s.inChannels * k * k, pixels = band.count * ow
        let nt = PackedConvWeights.pixelTile, tileStride = pairs * nt * 2
        parallel(pairs) { range in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 2 * ow) { rows in
                let rowA = rows.baseAddress!, rowB = rowA + ow
                /// Row `oy` of tap `tap` (all zero point for a tap past K or a row in the padding).
                func gather(_ tap: Int, _ oy: Int, into row: UnsafeMutablePointer<UInt8>) {
                    let i = tap / (k * k), ky = tap / k % k, kx = tap % k
                    let iy = oy * s.stride + ky - s.padding
                    guard tap < taps, iy >= 0, iy < s.inHeight else {
                        for ox in 0..<ow { row[ox] = zero }
                        return
                    }
                    let cols = ConvGeometry.validOutputs(input: s.inWidth, output: ow, tap: kx, stride: s.stride, padding: s.padding)
                    let src = input + (i * s.inHeight + iy) * s.inWidth + kx - s.padding
                    for ox in 0..<min(cols.lowerBound, ow) { row[ox] = zero }
                    if s.stride == 1 {
                        for ox in cols { row[ox] = src[ox] }
                    } else if s.stride == 2 {
                        // A constant stride lets LLVM vectorise the gather (loads and byte shuffles).
                        for ox in cols { row[ox] = src[2 &* ox] }
                    } else {
                        for ox in cols { row[ox] = src[ox * s.stride] }
                    }
                    for ox in max(cols.upperBound, cols.lowerBound)..<ow { row[ox] = zero }
                }
                for j in range {
                    let pairBase = out + j * nt * 2
                    for oy in band {
                        gather(2 * j, oy, into: rowA)
                        gather(2 * j + 1, oy, into: rowB)
                        var ox = 0, p = (oy - band.lowerBound) * ow
                        while ox < ow {
                            let q = p % nt, n = min(nt - q, ow - ox)
                            let dst = pairBase + (p / nt) * tileStride + q * 2
                            if n == nt {
                                for m in 0..<nt {
                                    dst[2 * m] = rowA[ox + m]
                                    dst[2 * m + 1] = rowB[ox + m]
                                }
                            } else {
                                for m in 0..<n {
                                    dst[2 * m] = rowA[ox + m]
                                    dst[2 * m + 1] = rowB[ox + m]
                                }
                            }
                            ox += n
                            p += n
                        }
                    }
                    for p in pixels..<paddedPixels {
                        let dst = pairBase + (p / nt) * tileStride + (p % nt) * 2
                        dst[0] = zero
                        dst[1] = zero
                    }
                }
            }
        }
    }



    /// The weight pair (w[k], w[k+1]) of one channel on every lane pair: one 32-bit broadcast seen as 16 int16
    /// lanes and sign-extended (vpbroadcastd feeding vpmaddwd; building the lanes one by one costs 5 shuffles).
    @inline(__always)
    static func pairBroadcast(_ p: UnsafePointer<Int16>) -> SIMD16<Int32> {
        let pair = UnsafeRawPointer(p).loadUnaligned(as: Int32.self)
        let lanes = unsafeBitCast(SIMD8<Int32>(repeating: pair), to: SIMD16<Int16>.self)
        var r = SIMD16<Int32>()
        for i in 0..<16 { r[i] = Int32(lanes[i]) }
        return r
    }

    /// int16 pair products summed into int32 lanes (vpmaddwd on x86).
    @inline(__always)
    static func madd(_ x: SIMD16<Int32>, _ w: SIMD16<Int32>) -> SIMD8<Int32> {
        let p = x &* w
        return p.evenHalf &+ p.oddHalf
    }

    /// 4 output channels x 16 pixels over all K pairs, then stores the accumulators that exist.
    @inline(__always)
    static func tile4x16(pairs: Int, weights: UnsafePointer<Int16>, columns: UnsafePointer<UInt8>,
                         start: SIMD4<Int32>, acc: UnsafeMutablePointer<Int32>, channel: Int, channels: Int,
                         pixel: Int, pixels: Int) {
        let a = accumulate4x16(pairs: pairs, weights: weights, columns: columns, start: start)
        store(a.0, a.1, acc: acc, row: channel, channels: channels, pixel: pixel, pixels: pixels)
        store(a.2, a.3, acc: acc, row: channel + 1, channels: channels, pixel: pixel, pixels: pixels)
        store(a.4, a.5, acc: acc, row: channel + 2, channels: channels, pixel: pixel, pixels: pixels)
        store(a.6, a.7, acc: acc, row: channel + 3, channels: channels, pixel: pixel, pixels: pixels)
    }

    /// The Winograd GEMM's tile: 4 output channels x 16 tiles over K channel pairs, with int16 activations (the
    /// transformed inputs), from zero; stores the 4 x 16 accumulators contiguously.
    @inline(__always)
    static func tile4x16i16(pairs: Int, weights: UnsafePointer<Int16>, columns: UnsafePointer<Int16>, out: UnsafeMutablePointer<Int32>) {
        let a = accumulate4x16(pairs: pairs, weights: weights, columns: columns, start: .zero)
        let o = UnsafeMutableRawPointer(out)
        o.storeBytes(of: a.0, toByteOffset: 0, as: SIMD8<Int32>.self); o.storeBytes(of: a.1, toByteOffset: 32, as: SIMD8<Int32>.self)
        o.storeBytes(of: a.2, toByteOffset: 64, as: SIMD8<Int32>.self); o.storeBytes(of: a.3, toByteOffset: 96, as: SIMD8<Int32>.self)
        o.storeBytes(of: a.4, toByteOffset: 128, as: SIMD8<Int32>.self); o.storeBytes(of: a.5, toByteOffset: 160, as: SIMD8<Int32>.self)
        o.storeBytes(of: a.6, toByteOffset: 192, as: SIMD8<Int32>.self); o.storeBytes(of: a.7, toByteOffset: 224, as: SIMD8<Int32>.self)
    }

    /// `tile4x16i16`'s result (4 output channels x 16 tiles, same layouts in and out) shaped for AArch64, where the
    /// pair-sum form above becomes smull + uzp + add: each int32 lane accumulates the products of one channel of
    /// the pair (an int16 x int16 multiply-accumulate long, `smlal`/`smlal2` against the weight pair broadcast by
    /// one `ld1r`), and the two lanes of each tile are added once at the end. 4 channels x 8 tiles per pass (16
    /// accumulator registers), two passes. llvm-mca -mcpu=cortex-a72: 16 smlal per 64 multiply-adds, 16 cycles.
    /// Each lane sums at most `pairs` products of |U'| <= 1152 and |V| <= 1020; wrapping is harmless (see
    /// ConvWinograd's top).
    @inline(__always)
    static func tile4x16i16Lanes(pairs: Int, weights: UnsafePointer<Int16>, columns: UnsafePointer<Int16>, out: UnsafeMutablePointer<Int32>) {
        let o = UnsafeMutableRawPointer(out)
        for half in 0..<2 {
            let a = accumulate4x8Lanes(pairs: pairs, weights: weights, columns: columns + 16 &* half)
            @inline(__always) func put(_ ch: Int, _ t: (SIMD4<Int32>, SIMD4<Int32>, SIMD4<Int32>, SIMD4<Int32>)) {
                let at = (ch &* 16 &+ 8 &* half) &* 4
                o.storeBytes(of: pairSums(t.0, t.1), toByteOffset: at, as: SIMD4<Int32>.self)
                o.storeBytes(of: pairSums(t.2, t.3), toByteOffset: at &+ 16, as: SIMD4<Int32>.self)
            }
            put(0, a.0); put(1, a.1); put(2, a.2); put(3, a.3)
        }
    }

    typealias Lanes4x4 = (SIMD4<Int32>, SIMD4<Int32>, SIMD4<Int32>, SIMD4<Int32>)

    /// 4 channels x 8 tiles (`columns`: the first of the 8 tiles' 16 int16 per pair, pairs 32 int16 apart) over K
    /// channel pairs (at least 1), from zero. Per channel: lanes (tile, channel of the pair) for tiles 0-1, 2-3, 4-5, 6-7.
    @inline(__always)
    static func accumulate4x8Lanes(pairs: Int, weights: UnsafePointer<Int16>, columns: UnsafePointer<Int16>)
        -> (Lanes4x4, Lanes4x4, Lanes4x4, Lanes4x4) {
        var a: Lanes4x4 = (.zero, .zero, .zero, .zero)
        var b = a, c = a, d = a
        var w = UnsafeRawPointer(weights), x = UnsafeRawPointer(columns)
        // A bottom-tested loop (pairs >= 1): one block per iteration (`for` gave the exit test mid-body and a
        // separate 4-instruction block for the increments).
        let end = w + 16 &* pairs
        repeat {
            let x0 = x.loadUnaligned(as: SIMD8<Int16>.self), x1 = x.loadUnaligned(fromByteOffset: 16, as: SIMD8<Int16>.self)
            let xl0 = widen4(x0.lowHalf), xh0 = widen4(x0.highHalf), xl1 = widen4(x1.lowHalf), xh1 = widen4(x1.highHalf)
            @inline(__always) func channel(_ acc: inout Lanes4x4, _ i: Int) {
                // The channel's weight pair (w[c], w[c + 1]) on every lane pair (one ld1r).
                let pair = w.loadUnaligned(fromByteOffset: 4 &* i, as: Int32.self)
                let v = unsafeBitCast(SIMD4<Int32>(repeating: pair), to: SIMD8<Int16>.self)
                let lo = widen4(v.lowHalf), hi = widen4(v.highHalf)
                acc.0 &+= xl0 &* lo; acc.1 &+= xh0 &* hi; acc.2 &+= xl1 &* lo; acc.3 &+= xh1 &* hi
            }
            channel(&a, 0); channel(&b, 1); channel(&c, 2); channel(&d, 3)
            w += 16
            x += 64
        } while w != end
        return (a, b, c, d)
    }

    /// Lanes 2i and 2i + 1 of (x, y) added: (x0 + x1, x2 + x3, y0 + y1, y2 + y3).
    @inline(__always)
    static func pairSums(_ x: SIMD4<Int32>, _ y: SIMD4<Int32>) -> SIMD4<Int32> {
        SIMD4(x[0] &+ x[1], x[2] &+ x[3], y[0] &+ y[1], y[2] &+ y[3])
    }

    /// int16 lanes sign-extended to int32 (an element loop: LLVM folds it into smlal's widening).
    @inline(__always)
    static func widen4(_ v: SIMD4<Int16>) -> SIMD4<Int32> {
        var r = SIMD4<Int32>()
        for i in 0..<4 { r[i] = Int32(v[i]) }
        return r
    }

    /// The register tile both share: 8 SIMD8<Int32> accumulators (channel-major, 2 x 8 pixels each), K pairs
    /// of 16 columns (u8 im2col or int16 Winograd inputs, widened as loaded) against 4 broadcast weight pairs.
    @inline(__always)
    static func accumulate4x16<C: PairColumns>(pairs: Int, weights: UnsafePointer<Int16>, columns: UnsafePointer<C>, start: SIMD4<Int32>)
        -> (SIMD8<Int32>, SIMD8<Int32>, SIMD8<Int32>, SIMD8<Int32>, SIMD8<Int32>, SIMD8<Int32>, SIMD8<Int32>, SIMD8<Int32>) {
        var a00 = SIMD8<Int32>(repeating: start[0]), a01 = a00
        var a10 = SIMD8<Int32>(repeating: start[1]), a11 = a10
        var a20 = SIMD8<Int32>(repeating: start[2]), a21 = a20
        var a30 = SIMD8<Int32>(repeating: start[3]), a31 = a30
        var w = weights
        var c = columns
        for _ in 0..<pairs {
            let x0 = C.widen16(c), x1 = C.widen16(c + 16)
            let w0 = pairBroadcast(w), w1 = pairBroadcast(w + 2), w2 = pairBroadcast(w + 4), w3 = pairBroadcast(w + 6)
            a00 &+= madd(x0, w0); a01 &+= madd(x1, w0)
            a10 &+= madd(x0, w1); a11 &+= madd(x1, w1)
            a20 &+= madd(x0, w2); a21 &+= madd(x1, w2)
            a30 &+= madd(x0, w3); a31 &+= madd(x1, w3)
            w += 8
            c += 32
        }
        return (a00, a01, a10, a11, a20, a21, a30, a31)
    }

    /// Stores 16 accumulators of one output channel, only those inside the real channels and pixels.
    @inline(__always)
    static func store(_ lo: SIMD8<Int32>, _ hi: SIMD8<Int32>, acc: UnsafeMutablePointer<Int32>, row: Int, channels: Int,
                      pixel: Int, pixels: Int) {
        guard row < channels else { return }
        let out = acc + row * pixels + pixel
        if pixel + 16 <= pixels {
            UnsafeMutableRawPointer(out).storeBytes(of: lo, as: SIMD8<Int32>.self)
            UnsafeMutableRawPointer(out + 8).storeBytes(of: hi, as: SIMD8<Int32>.self)
        } else {
            for j in 0..<min(8, pixels - pixel) { out[j] = lo[j] }
            for j in 0..<max(0, min(8, pixels - pixel - 8)) { out[8 + j] = hi[j] }
        }
    }
}

/// A column element of the pairs kernel (u8 im2col bytes, or int16 Winograd inputs): 16 of them (8 pixels x a
/// K pair) loaded and widened to the Int32 lanes of the pattern LLVM turns into vpmaddwd.
protocol PairColumns {
    static func widen16(_ p: UnsafePointer<Self>) -> SIMD16<Int32>
}

extension UInt8: PairColumns {
    @inline(__always)
    static func widen16(_ p: UnsafePointer<UInt8>) -> SIMD16<Int32> {
        let v = UnsafeRawPointer(p).loadUnaligned(as: SIMD16<UInt8>.self)
        var r = SIMD16<Int32>()
        for i in 0..<16 { r[i] = Int32(v[i]) }
        return r
    }
}

extension Int16: PairColumns {
    @inline(__always)
    static func widen16(_ p: UnsafePointer<Int16>) -> SIMD16<Int32> {
        let v = UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Int16>.self)
        var r = SIMD16<Int32>()
        for i in 0..<16 { r[i] = Int32(v[i]) }
        return r
    }
}

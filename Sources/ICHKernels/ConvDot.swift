// u8 x s8 convolution as im2col + dot products reduced over K, the shape ARM's dot-product instructions want.
//
// Why this shape: LLVM's AArch64 backend emits `sdot` (Cortex-A76, Raspberry Pi 5: two per cycle, 16 int8
// multiply-adds each) only for reduction-shaped code: scalar Int32 accumulators summed over a K loop of
// sign-extended int8 products, which the loop vectoriser turns into ld4 + sdot (../shared/KNOWHOW.md). On
// plain armv8-a (Raspberry Pi 4) the same loop becomes smull + saddw. Both operands must be signed: the
// activations are stored as x - 128 (the top bit flipped) and the start value adds 128 x sum(w) back:
//   bias + sum (x - zero) w = bias + (128 - zero) sum w + sum (x - 128) w,   exactly, in int32.
// K is padded to a multiple of 32 with zero weights (the vectorised loop takes 32 taps per iteration), so no
// remainder loop runs.

public enum ConvDot {
    public static let depthAlignment = 32

    /// As `ConvGEMM.convAccumulate` (which dispatches here), for the band `rows` of output rows.
    /// `starts`: per tile of 4 output channels, bias + (128 - zero) x sum w (SIMD4<Int32> each). `bordered`:
    /// the band's input rows as `ConvGEMM.border` copies them, unsplit and with the top bit flipped.
    static func convAccumulate(_ s: ReferenceKernels.ConvShape, rows band: Range<Int>, weights w: PackedConvWeights,
                               starts: UnsafeRawPointer, acc: UnsafeMutablePointer<Int32>, bordered: UnsafePointer<UInt8>,
                               scratch: UnsafeMutablePointer<Int8>, parallel: Parallel, finish: (Range<Int>) -> Void) {
        let pixels = band.count * s.outWidth, depth = w.depth, mt = PackedConvWeights.channelTile
        im2colRows(s, rows: band, bordered: bordered, depth: depth, out: scratch, parallel: parallel)
        let tiles = (s.outChannels + mt - 1) / mt
        // Pixel blocks outside (one block per parallel chunk), channel tiles inside: a tile's weights (K x 4
        // bytes, at most 18 KiB in ResNet18) stay in L1 while the block's rows stream past them.
        let block = 16
        w.packed.withUnsafeBufferPointer { packed in
            parallel((pixels + block - 1) / block) { blocks in
                let first = blocks.lowerBound * block, end = min(pixels, blocks.upperBound * block)
                for tile in 0..<tiles {
                    let weights = packed.baseAddress! + tile * depth * mt
                    let channel = tile * mt, live = min(mt, s.outChannels - channel)
                    let start = starts.loadUnaligned(fromByteOffset: tile * 16, as: SIMD4<Int32>.self)
                    for p in first..<end {
                        let sums = dot4(depth: depth, weights: weights, row: scratch + p * depth) &+ start
                        for lane in 0..<live { acc[(channel + lane) * pixels + p] = sums[lane] }
                    }
                }
                finish(first..<end)
            }
        }
    }

    /// The four channels' dot products with one im2col row, over `depth` (a multiple of 32) taps. Written as
    /// four scalar reductions on purpose: that is the form the vectoriser turns into `sdot`.
    @inline(__always)
    static func dot4(depth: Int, weights: UnsafePointer<Int8>, row: UnsafePointer<Int8>) -> SIMD4<Int32> {
        var a0: Int32 = 0, a1: Int32 = 0, a2: Int32 = 0, a3: Int32 = 0
        // `& ~31` tells the vectoriser the trip count is a multiple of 32 (it is): on armv8-a it then emits the
        // 16-lane loop alone instead of an 8-lane loop with remainder loops.
        for j in 0..<(depth & ~31) {
            let x = Int32(row[j])
            a0 &+= Int32(weights[4 &* j]) &* x
            a1 &+= Int32(weights[4 &* j &+ 1]) &* x
            a2 &+= Int32(weights[4 &* j &+ 2]) &* x
            a3 &+= Int32(weights[4 &* j &+ 3]) &* x
        }
        return SIMD4(a0, a1, a2, a3)
    }

    /// im2col as one row of `depth` signed taps per output pixel: out[p x depth + k] = x[k][p] - 128, read from
    /// the bordered copy (padding and the flip already applied), so a pixel's taps of one kernel row are `k`
    /// consecutive bytes: plain copies, no bounds checks. Taps past K are 0 (their weights are 0). Output rows
    /// are split over `parallel`, each writing its own bytes.
    static func im2colRows(_ s: ReferenceKernels.ConvShape, rows band: Range<Int>, bordered: UnsafePointer<UInt8>,
                           depth: Int, out: UnsafeMutablePointer<Int8>, parallel: Parallel) {
        let ow = s.outWidth, k = s.kernel, st = s.stride, taps = s.inChannels * k * k
        let width = s.inWidth + 2 * s.padding, plane = ((band.count - 1) * st + k) * width
        let bytes = UnsafeMutableRawPointer(out).assumingMemoryBound(to: UInt8.self)
        parallel(band.count) { rows in
            for r in rows {
                for ox in 0..<ow {
                    let row = bytes + (r * ow + ox) * depth
                    var t = 0
                    for c in 0..<s.inChannels {
                        var src = bordered + c * plane + (r * st) * width + ox * st
                        for _ in 0..<k {
                            for kx in 0..<k { row[t &+ kx] = src[kx] }
                            t += k
                            src += width
                        }
                    }
                    for j in taps..<depth { row[j] = 0 }
                }
            }
        }
    }
}

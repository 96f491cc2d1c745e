import ICHIngest
import ICHPhantom
import Testing

@Suite struct HeadPhantomTests {
    @Test(arguments: HeadPhantom.Subtype.allCases)
    func everySubtypeIsDrawnOnContiguousSlices(_ subtype: HeadPhantom.Subtype) {
        var drawnSeries = 0
        for seed in UInt64(1)...6 {
            let head = HeadPhantom(seed: seed * 101, subtypes: [subtype])
            let labelled = (0..<head.sliceCount).filter { head.render(slice: $0, size: 128).subtypes.contains(subtype) }
            guard let first = labelled.first, let last = labelled.last else { continue }
            drawnSeries += 1
            // A 3-D object: the slices that show it form one run (no gaps).
            #expect(labelled == Array(first...last), "\(subtype) seed \(seed * 101): slices \(labelled)")
        }
        #expect(drawnSeries >= 4, "\(subtype) drawn in only \(drawnSeries) of 6 series")
    }

    @Test func negativeSeriesHaveNoBleedsAndTheAnatomyIsCT() {
        let head = HeadPhantom(seed: 7, subtypes: [])
        var sawSkull = false, sawBrain = false, sawBlank = false
        for k in 0..<head.sliceCount {
            let (image, subtypes, _) = head.render(slice: k, size: 128)
            #expect(subtypes.isEmpty)
            let stats = image.statistics
            if stats.max < -900 { sawBlank = true }
            if stats.max > 1000 { sawSkull = true }
            if image.pixels.filter({ $0 > 20 && $0 < 45 }).count > 1000 { sawBrain = true }
            #expect(stats.min >= -1100)
        }
        #expect(sawSkull && sawBrain && sawBlank)
    }

    @Test func seriesAreDeterministicAndVaryTheirStorage() {
        let a = PhantomSeries(seed: 12, positive: true, size: 64).slices()
        let b = PhantomSeries(seed: 12, positive: true, size: 64).slices()
        #expect(a.map(\.image) == b.map(\.image))
        #expect(a.map(\.labels) == b.map(\.labels))
        #expect(Set((0..<7).map { PhantomSeries(seed: UInt64($0), positive: false).storage.transferSyntax }).count >= 5)
        #expect(PhantomSeries(seed: 3, positive: true).subtypes.count >= 1)
        #expect(PhantomSeries(seed: 3, positive: false).subtypes.isEmpty)
    }
}

import ArgumentParser
import Foundation
import ICHIngest
import ICHPhantom

struct PhantomCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "phantom",
        abstract: "Write synthetic head-CT series (DICOM, through DCMTK) with RSNA-format labels.",
        discussion: """
            Synthetic phantoms only (ICHPhantom.HeadPhantom; --family, docs/phantoms.md): scalp, skull with diploe, \
            cortex with sulci, white matter, ventricles, cisterns, skull base, blank slices above the vertex (the \
            varied family adds per-series anatomy, confounders, acquisition and noise); positive series carry one to \
            three bleed subtypes (epidural lens, subdural crescent, subarachnoid sulcal blood, intraparenchymal \
            blob with optional rim, intraventricular layering) consistent across slices. Storage varies by series \
            (12/16 bits, signed/unsigned, the RSNA wrapped form, slope 0.5, compressed syntaxes). Same seed, same bytes. \
            Writes DIR/<series>/<n>.dcm, DIR/labels.csv (ID,Label rows ID_<SOPInstanceUID>_<subtype>), \
            DIR/series.csv, and DIR/slices.csv (blood pixels drawn per subtype and slice, at 512x512: bleed sizes, \
            for reading results by size).
            """)

    @Option(help: "Output folder.")
    var out: String

    @Option(help: "Number of series.")
    var series: Int = 1

    @Option(help: "Seed; series i uses seed + i.")
    var seed: UInt64 = 1

    @Option(help: "Fraction of series with a bleed (ignored with --positive).")
    var positiveRate: Double = 0.5

    @Option(help: "Generator family: standard (the default: what the bundled model was trained on), varied (domain-randomised anatomy, confounders, acquisition and noise; issue 20's candidate model is trained on it) or heldout (a structurally different family kept out of training; docs/phantoms.md).")
    var family: HeadPhantom.Family = .standard

    @Flag(help: "Every series has a bleed (a known-positive series for commissioning).")
    var positive = false

    @Flag(help: "Store every series as 16-bit signed explicit little endian (default: storage varies by series).")
    var plainStorage = false

    func validate() throws {
        if series < 1 { throw ValidationError("--series must be at least 1") }
        if !(0...1).contains(positiveRate) { throw ValidationError("--positive-rate must be within 0...1") }
    }

    func run() throws {
        let root = URL(fileURLWithPath: out)
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        var labelRows = ["ID,Label"], seriesRows = ["SeriesInstanceUID,Folder,Slices,Positive,Subtypes"]
        let bleedSubtypes = RSNALabels.subtypes.dropFirst()
        var sliceRows = ["SOPInstanceUID,SeriesInstanceUID,Instance," + bleedSubtypes.map { "\($0)_pixels" }.joined(separator: ",")]
        // Series are independent (each has its own seed): write them on every core, list them in order.
        let results = PhantomResults(count: series)
        DispatchQueue.concurrentPerform(iterations: series) { i in
            let s = seed &+ UInt64(i)
            var pick = SeededGenerator(seed: s ^ 0x5EED)
            let isPositive = positive || pick.unit() < positiveRate
            let phantom = PhantomSeries(seed: s, positive: isPositive, family: family)
            let folder = String(format: "series-%03d", i + 1)
            do {
                let slices = try phantom.write(to: root.appendingPathComponent(folder).path, storage: plainStorage ? CTStorage() : nil)
                results.set(i, .success((phantom, isPositive, folder, slices)))
            } catch {
                results.set(i, .failure(ValidationError(String(describing: error))))
            }
        }
        for result in results.all {
            let (phantom, isPositive, folder, slices) = try result.get()
            for slice in slices {
                sliceRows.append("\(slice.identity.sopInstanceUID),\(slice.identity.seriesInstanceUID),\(slice.identity.instanceNumber),"
                                 + bleedSubtypes.map { String(slice.bloodPixels[$0] ?? 0) }.joined(separator: ","))
                for subtype in RSNALabels.subtypes {
                    labelRows.append("ID_\(slice.identity.sopInstanceUID)_\(subtype),\(slice.labels.contains(subtype) ? 1 : 0)")
                }
            }
            seriesRows.append("\(slices[0].identity.seriesInstanceUID),\(folder),\(slices.count),\(isPositive ? 1 : 0),"
                              + phantom.subtypes.map(\.rawValue).sorted().joined(separator: " "))
        }
        try writeAtomically(Array((labelRows.joined(separator: "\n") + "\n").utf8), to: root.appendingPathComponent("labels.csv").path)
        try writeAtomically(Array((seriesRows.joined(separator: "\n") + "\n").utf8), to: root.appendingPathComponent("series.csv").path)
        try writeAtomically(Array((sliceRows.joined(separator: "\n") + "\n").utf8), to: root.appendingPathComponent("slices.csv").path)
        print("wrote \(series) synthetic series to \(out)")
    }
}

extension HeadPhantom.Family: ExpressibleByArgument {}

/// What each series' worker wrote, by series index (workers finish in any order).
private final class PhantomResults: @unchecked Sendable {
    typealias Written = (PhantomSeries, Bool, String, [PhantomSeries.Slice])
    private let lock = NSLock()
    private var results: [Result<Written, ValidationError>?]

    init(count: Int) { results = Array(repeating: nil, count: count) }

    func set(_ i: Int, _ result: Result<Written, ValidationError>) { lock.withLock { results[i] = result } }

    var all: [Result<Written, ValidationError>] { lock.withLock { results.map { $0! } } }
}

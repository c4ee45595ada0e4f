import ArgumentParser
import Foundation
import PARTEngine
import PARTTraining

struct PresetsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "presets",
        abstract: "List the training presets (dataset x model x method) and their fields.",
        discussion: """
        Use one with `part train --preset NAME`; every flag of `part train` overrides the field it \
        names. --json prints each preset's full configuration.
        """)

    @Flag(help: "Print each preset as one JSON object per line.")
    var json = false

    struct Entry: Encodable {
        let name: String
        let summary: String
        let config: TrainingConfig
    }

    func run() throws {
        if json {
            for p in Presets.all { try printJSON(Entry(name: p.name, summary: p.summary, config: p.config)) }
            return
        }
        let header = ["preset", "dataset", "arch", "objective", "budget", "epochs", "burn-in", "lr", "schedule",
                      "wd", "eps", "eps-low", "alpha", "steps", "beta"]
        var rows = [header]
        for p in Presets.all {
            let c = p.config.resolved
            let schedule = c.milestones.isEmpty ? c.schedule.rawValue
                : "x\(c.gamma)@\(c.milestones.map(String.init).joined(separator: ","))"
            rows.append([p.name, c.dataset, c.architecture, c.objective.rawValue, c.budget.rawValue, "\(c.epochs)",
                         "\(c.burnIn)", "\(c.learningRate)", schedule, "\(c.weightDecay)", budgetText(Double(c.epsilon)),
                         c.budget == .cam ? budgetText(Double(c.epsilonLow)) : "-", budgetText(Double(c.stepSize)), "\(c.steps)",
                         c.objective == .at ? "-" : "\(c.beta)"])
        }
        let widths = header.indices.map { i in rows.map { $0[i].count }.max() ?? 0 }
        for row in rows {
            print(zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces))
        }
        print("")
        for summary in Set(Presets.all.map { "\($0.config.dataset)-\($0.config.architecture): \($0.summary)" }).sorted() {
            print(summary)
        }
        print("CAM presets use gradcam and the zscore rule; the CIFAR-10, SVHN and TinyImageNet presets need "
              + "their dataset's files (--data DIR).")
    }
}

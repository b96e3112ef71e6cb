using EdgeLlm.Fuzz;

// edgellm-fuzz [TARGET...] [--cases N] [--seed S] [--out DIR] [--timeout SECONDS]
// Runs each target (default: all) for N mutated inputs; prints one line per target and exits 1 on any failure.
var targets = new List<string>();
int cases = 1000, seed = 1, timeout = 10;
string outDir = Path.Combine(Path.GetTempPath(), "edgellm-fuzz-failures");
for (int i = 0; i < args.Length; i++)
{
    string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
    switch (args[i])
    {
        case "--cases": cases = int.Parse(Next(), System.Globalization.CultureInfo.InvariantCulture); break;
        case "--seed": seed = int.Parse(Next(), System.Globalization.CultureInfo.InvariantCulture); break;
        case "--out": outDir = Next(); break;
        case "--timeout": timeout = int.Parse(Next(), System.Globalization.CultureInfo.InvariantCulture); break;
        case "-h" or "--help":
            Console.WriteLine($"usage: edgellm-fuzz [{string.Join("|", Targets.Names)}...] [--cases N] [--seed S] [--out DIR] [--timeout S]");
            return 0;
        default: targets.Add(args[i]); break;
    }
}
if (targets.Count == 0) targets.AddRange(Targets.Names);
string root = AppContext.BaseDirectory;
while (!File.Exists(Path.Combine(root, "EdgeLlm.sln"))) root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("run from inside the repository");
int failures = 0;
foreach (string t in targets)
{
    var report = Targets.Run(t, root, cases, seed, outDir, TimeSpan.FromSeconds(timeout));
    Console.WriteLine(report);
    foreach (string f in report.Failures) Console.WriteLine("  FAIL " + f);
    failures += report.Failures.Count;
}
return failures == 0 ? 0 : 1;

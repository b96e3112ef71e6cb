using System.Globalization;
using System.Text;

namespace EdgeLlm.Backends.Cuda;

/// <summary>One kernel's line of a <see cref="CudaProfile"/>: how often it ran and for how long in all.</summary>
public readonly record struct CudaProfileRow(string Kernel, long Calls, double TotalMs)
{
    public double MeanUs => Calls == 0 ? 0 : TotalMs * 1000.0 / Calls;
}

/// <summary>
/// The per-kernel times of EDGELLM_CUDA_PROFILE=1: CudaBackend records a CUDA event before and after every launch
/// (graphs are off then, so every launch is its own) and adds each elapsed time here by kernel name;
/// <see cref="Format"/> is the table <c>run</c> and <c>bench</c> print at the end.
/// </summary>
public sealed class CudaProfile
{
    /// <summary>The name device-to-device copies (<c>IBackend.Copy</c>) are listed under.</summary>
    public const string CopyName = "memcpy_dtod";

    private readonly Dictionary<string, int> _index = new(StringComparer.Ordinal);
    private readonly List<(string Kernel, long Calls, double Ms)> _rows = new();

    /// <summary>Counts one launch of <paramref name="kernel"/> that took <paramref name="ms"/> milliseconds.</summary>
    public void Add(string kernel, double ms)
    {
        if (!(ms >= 0) || double.IsInfinity(ms)) throw new ArgumentOutOfRangeException(nameof(ms), $"kernel time {ms} ms of {kernel}");
        if (_index.TryGetValue(kernel, out int i))
        {
            var r = _rows[i];
            _rows[i] = (r.Kernel, r.Calls + 1, r.Ms + ms);
        }
        else
        {
            _index[kernel] = _rows.Count;
            _rows.Add((kernel, 1, ms));
        }
    }

    /// <summary>Launches counted, all kernels together.</summary>
    public long Calls { get { long n = 0; foreach (var r in _rows) n += r.Calls; return n; } }

    /// <summary>Total kernel time in milliseconds.</summary>
    public double TotalMs { get { double t = 0; foreach (var r in _rows) t += r.Ms; return t; } }

    /// <summary>One row per kernel, the longest total first (ties: by name).</summary>
    public IReadOnlyList<CudaProfileRow> Rows()
    {
        var rows = _rows.Select(r => new CudaProfileRow(r.Kernel, r.Calls, r.Ms)).ToList();
        rows.Sort((a, b) => b.TotalMs != a.TotalMs ? b.TotalMs.CompareTo(a.TotalMs) : string.CompareOrdinal(a.Kernel, b.Kernel));
        return rows;
    }

    /// <summary>The table: kernel, calls, total ms, mean us, share of the total kernel time; then a total line.</summary>
    public string Format()
    {
        var rows = Rows();
        double total = TotalMs;
        int width = Math.Max("kernel".Length, rows.Count == 0 ? 0 : rows.Max(r => r.Kernel.Length));
        var s = new StringBuilder();
        var c = CultureInfo.InvariantCulture;
        s.Append(c, $"{"kernel".PadRight(width)}  {"calls",9}  {"total ms",10}  {"mean us",9}  {"share",6}\n");
        foreach (var r in rows)
            s.Append(c, $"{r.Kernel.PadRight(width)}  {r.Calls,9}  {r.TotalMs,10:F3}  {r.MeanUs,9:F2}  {(total > 0 ? r.TotalMs / total : 0),6:P1}\n");
        s.Append(c, $"{"total".PadRight(width)}  {Calls,9}  {total,10:F3}  {(Calls == 0 ? 0 : total * 1000.0 / Calls),9:F2}  {(total > 0 ? 1.0 : 0),6:P1}\n");
        return s.ToString();
    }
}

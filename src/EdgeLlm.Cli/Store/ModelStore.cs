using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;
using EdgeLlm.Gguf;

namespace EdgeLlm.Cli.Store;

/// <summary>
/// The folder of models known by name: NAME.gguf with NAME.json (its <see cref="ModelManifest"/>) beside it.
/// Downloads in progress are NAME.gguf.partial. The folder is $EDGELLM_MODELS, else $XDG_DATA_HOME/edgellm/models,
/// else ~/.local/share/edgellm/models.
/// </summary>
public sealed partial class ModelStore
{
    public const string Variable = "EDGELLM_MODELS";
    private const string ManifestExt = ".json";
    public const string PartialExt = ".partial";

    public string Root { get; }

    public ModelStore(string root) => Root = Path.GetFullPath(root);

    /// <summary>The store the environment names.</summary>
    public static ModelStore Default() => new(DefaultRoot());

    public static string DefaultRoot()
    {
        string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        if (string.IsNullOrEmpty(home)) home = Environment.GetEnvironmentVariable("HOME") ?? ".";
        return DefaultRoot(Environment.GetEnvironmentVariable, home);
    }

    /// <summary>$EDGELLM_MODELS, else $XDG_DATA_HOME/edgellm/models (an absolute path only, as the XDG spec says), else HOME/.local/share/edgellm/models.</summary>
    internal static string DefaultRoot(Func<string, string?> getenv, string home)
    {
        string? env = getenv(Variable);
        if (!string.IsNullOrEmpty(env)) return env;
        string? xdg = getenv("XDG_DATA_HOME");
        if (!string.IsNullOrEmpty(xdg) && Path.IsPathRooted(xdg)) return Path.Combine(xdg, "edgellm", "models");
        return Path.Combine(home, ".local", "share", "edgellm", "models");
    }

    /// <summary>Names are file names: letters, digits, '.', '_', '-', at most 128, not starting with '.' or '-'.</summary>
    public static bool IsValidName(string name)
    {
        if (name.Length is 0 or > 128 || name[0] is '.' or '-') return false;
        foreach (char c in name)
            if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-')) return false;
        return true;
    }

    /// <summary>A valid store name made from a file name ("Foo Q4_K_M.gguf" -> "Foo_Q4_K_M").</summary>
    public static string NameFromFile(string fileName)
    {
        string stem = Path.GetFileName(fileName);
        if (stem.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)) stem = stem[..^5];
        var chars = stem.ToCharArray();
        for (int i = 0; i < chars.Length; i++)
            if (!(char.IsAsciiLetterOrDigit(chars[i]) || chars[i] is '.' or '_' or '-')) chars[i] = '_';
        string name = new string(chars).TrimStart('.', '-');
        if (name.Length > 128) name = name[..128];
        return name.Length == 0 ? "model" : name;
    }

    public string ModelPath(string name) => Path.Combine(Root, name + ".gguf");
    public string ManifestPath(string name) => Path.Combine(Root, name + ManifestExt);
    public string PartialPath(string name) => ModelPath(name) + PartialExt;

    /// <summary>Every model whose manifest and file are both present, by name. Unreadable manifests are skipped.</summary>
    public List<ModelManifest> List()
    {
        var list = new List<ModelManifest>();
        if (!Directory.Exists(Root)) return list;
        foreach (string path in Directory.EnumerateFiles(Root, "*" + ManifestExt))
        {
            var m = TryRead(path);
            if (m is not null && File.Exists(Path.Combine(Root, m.File))) list.Add(m);
        }
        list.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        return list;
    }

    private static ModelManifest? TryRead(string path)
    {
        try
        {
            var m = JsonSerializer.Deserialize(File.ReadAllBytes(path), StoreJson.Default.ModelManifest);
            // The manifest is data on disk: its file name must stay inside the store.
            if (m is null || !IsValidName(m.Name) || m.File != m.Name + ".gguf") return null;
            return m;
        }
        catch (JsonException) { return null; }
        catch (IOException) { return null; }
    }

    /// <summary>The model called <paramref name="nameOrAlias"/> (a name first, then an alias; case-insensitive), or null.</summary>
    /// <exception cref="EdgeLlmException">when the alias names several models</exception>
    public ModelManifest? Find(string nameOrAlias)
    {
        var all = List();
        foreach (var m in all) if (m.Name == nameOrAlias) return m;
        foreach (var m in all) if (string.Equals(m.Name, nameOrAlias, StringComparison.OrdinalIgnoreCase)) return m;
        var hits = new List<ModelManifest>();
        foreach (var m in all)
            foreach (string a in m.Aliases)
                if (string.Equals(a, nameOrAlias, StringComparison.OrdinalIgnoreCase)) { hits.Add(m); break; }
        if (hits.Count > 1)
        {
            var names = new List<string>();
            foreach (var h in hits) names.Add(h.Name);
            throw new EdgeLlmException($"'{nameOrAlias}' names {hits.Count} stored models ({string.Join(", ", names)}): give the full name");
        }
        return hits.Count == 1 ? hits[0] : null;
    }

    /// <summary>The stored file of <paramref name="nameOrAlias"/>, or null.</summary>
    public string? Resolve(string nameOrAlias) => Find(nameOrAlias) is { } m ? Path.Combine(Root, m.File) : null;

    /// <summary>
    /// Moves a verified file (in the store folder) into place as NAME.gguf and writes its manifest. An existing model
    /// of that name is replaced.
    /// </summary>
    public ModelManifest Commit(string verifiedFile, string name, string[] aliases, string source, string sha256, long size)
    {
        if (!IsValidName(name)) throw new EdgeLlmException($"'{name}' is not a valid model name (letters, digits, '.', '_', '-')");
        Directory.CreateDirectory(Root);
        var m = new ModelManifest
        {
            Name = name,
            Aliases = aliases,
            Source = source,
            File = name + ".gguf",
            Sha256 = sha256,
            Size = size,
            Date = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture),
        };
        File.Move(verifiedFile, ModelPath(name), overwrite: true);
        string tmp = ManifestPath(name) + ".tmp";
        try { File.WriteAllBytes(tmp, JsonSerializer.SerializeToUtf8Bytes(m, StoreJson.Default.ModelManifest)); }
        catch (Exception e) when (EdgeLlm.IO.WriteFailure.Is(e) && e is not (DirectoryNotFoundException or FileNotFoundException))
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw new EdgeLlm.IO.OutputWriteException(ManifestPath(name), EdgeLlm.IO.WriteFailure.Reason(e), "the model file is stored, its manifest is not (pull again)");
        }
        File.Move(tmp, ManifestPath(name), overwrite: true);
        return m;
    }

    /// <summary>Deletes a model (by name or alias), its manifest and any partial download; returns what was removed.</summary>
    public ModelManifest Remove(string nameOrAlias)
    {
        var m = Find(nameOrAlias) ?? throw new EdgeLlmException($"no stored model called '{nameOrAlias}' in {Root} (see 'edgellm list')");
        File.Delete(ManifestPath(m.Name));
        File.Delete(ModelPath(m.Name));
        File.Delete(PartialPath(m.Name));
        File.Delete(HubClient.ResumeInfoPath(PartialPath(m.Name)));
        return m;
    }

    /// <summary>
    /// Adds a GGUF file from anywhere: checked as a GGUF first, then hard-linked into the store when it is on the
    /// same file system (no copy, no extra space), copied otherwise.
    /// </summary>
    public ModelManifest Import(string path, string? name, out bool linked)
    {
        if (Directory.Exists(path))
            throw new EdgeLlmException($"{path}: is a folder; import takes a .gguf file. Convert a Hugging Face checkpoint first " +
                "with edgellm-convert (edgellm-convert FOLDER -o MODEL.gguf; dist/ has it next to edgellm), then import the .gguf");
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such file");
        CheckGguf(path);
        name ??= NameFromFile(path);
        if (!IsValidName(name)) throw new EdgeLlmException($"'{name}' is not a valid model name (letters, digits, '.', '_', '-')");
        Directory.CreateDirectory(Root);
        string staging = PartialPath(name);
        File.Delete(staging);
        linked = TryHardLink(Path.GetFullPath(path), staging);
        if (!linked) File.Copy(path, staging);
        try
        {
            string sha = Sha256Hex(staging);
            long size = new FileInfo(staging).Length;
            return Commit(staging, name, [], "file:" + Path.GetFullPath(path), sha, size);
        }
        catch
        {
            File.Delete(staging);
            throw;
        }
    }

    /// <summary>Opens the file as a GGUF (header, metadata and tensor table bounds-checked); throws a one-line error if it is not one.</summary>
    public static void CheckGguf(string path)
    {
        using var f = GgufFile.Open(path, new GgufLoadOptions { Mode = GgufLoadMode.Map });
    }

    public static string Sha256Hex(string path)
    {
        using var s = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        return Convert.ToHexStringLower(SHA256.HashData(s));
    }

    private static bool TryHardLink(string existing, string newPath)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return false;
        return link(existing, newPath) == 0;
    }

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int link(string oldpath, string newpath);
}

using EdgeLlm.Compute;
using EdgeLlm.Gguf;
using EdgeLlm.Model;

namespace EdgeLlm.Backends;

/// <summary>
/// The library's way to load a model: <c>LlamaModel.Load(path, options)</c> (with <c>using EdgeLlm.Backends;</c>).
/// Opens the file, resolves the options once (<see cref="ResolvedOptions"/>) and lets <see cref="BackendSelector"/>
/// choose the device and build the model on it, falling back to the CPU as <see cref="BackendSelector.Build"/> says.
/// It lives here, above the model, because choosing a backend means knowing them all; the model only knows
/// <see cref="IBackend"/>.
/// </summary>
public static class ModelLoader
{
    extension(LlamaModel)
    {
        /// <summary>
        /// Opens a GGUF file and loads it on the backend <see cref="BackendOptions.Device"/> selects (the CPU by
        /// default). With "auto", a CUDA failure while loading the weights falls back to the CPU. The model owns
        /// (and disposes) the file.
        /// </summary>
        public static LlamaModel Load(string path, BackendOptions? options = null)
        {
            options ??= new BackendOptions();
            var device = DeviceSpec.Parse(options.Device);
            return LoadOwned(GgufFile.Open(path, Cuda.CudaFileLoading.For(device, options.Load)), options, device);
        }

        /// <summary>
        /// <see cref="Load(string, BackendOptions?)"/> for a file already open (e.g. one read from memory); the model takes
        /// ownership of <paramref name="file"/> and disposes it, also when loading fails.
        /// </summary>
        public static LlamaModel Load(GgufFile file, BackendOptions? options = null)
        {
            options ??= new BackendOptions();
            DeviceSpec device;
            try { device = DeviceSpec.Parse(options.Device); }
            catch { file.Dispose(); throw; }
            return LoadOwned(file, options, device);
        }
    }

    private static LlamaModel LoadOwned(GgufFile file, BackendOptions options, DeviceSpec device)
    {
        try
        {
            var resolved = ResolvedOptions.Resolve(file, options, device);
            return BackendSelector.Build(resolved, selection => new LlamaModel(file, selection.Backend, resolved, ownsFile: true)
            {
                BackendDescription = selection.Description,
                BackendWarning = selection.Warn,
            });
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }
}

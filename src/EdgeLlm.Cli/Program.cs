Console.WriteLine("edgellm");

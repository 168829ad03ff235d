"""cellmae: masked autoencoders for cell microscopy, from images on disk to a benchmarked map of biology."""

__version__ = "0.1.0"

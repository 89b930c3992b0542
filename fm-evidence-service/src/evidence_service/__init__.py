"""FaultMaven evidence service: uploaded files and their metadata"""
